"""Checkpoint conversion between the official, timm and Paddle GENet layouts."""
from .errors import CheckpointError, VerificationError
from .mapping import MappingTable, ModuleMapping, ParamMapping, check_state, identify, mapping_table

__all__ = ["CheckpointError", "VerificationError", "MappingTable", "ModuleMapping", "ParamMapping",
           "check_state", "identify", "mapping_table"]
