"""Checkpoint conversion between the official, timm and Paddle GENet layouts: the mapping table
(table/), safe file I/O (files/), conversion with verification (conversion/) and genet-convert (cli.py).
Import from the modules themselves (for example converters.table.mapping.mapping_table)."""
