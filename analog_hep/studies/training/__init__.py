"""Training through a driver and the HDF5 run record (write and read)."""
