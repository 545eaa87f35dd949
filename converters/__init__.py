"""Checkpoint conversion between the official, timm and Paddle GENet layouts."""
from .convert import ConvertResult, convert
from .errors import CheckpointError, VerificationError
from .load import LoadedWeights, load_weights, to_layout
from .mapping import MappingTable, ModuleMapping, ParamMapping, check_state, identify, mapping_table

__all__ = ["ConvertResult", "convert", "CheckpointError", "VerificationError", "LoadedWeights", "MappingTable",
           "ModuleMapping", "ParamMapping", "check_state", "identify", "load_weights", "mapping_table", "to_layout"]
