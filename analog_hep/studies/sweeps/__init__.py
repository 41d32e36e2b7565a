"""Sweep files, their execution (vectorised where shapes agree, Dask otherwise) and records."""
