"""analog-hep: emulate analog crossbar chips and train them with holomorphic EP.

Data flows ``spec`` (YAML -> validated specs) -> ``emulator`` (fabricate a chip, settle it)
-> ``drivers`` (the contract any chip meets) -> ``hep`` (the controller) -> ``studies``
(gradcheck, training, records). ``physics`` holds the pure-JAX device, neuron and periphery
models the emulator is built from.
"""

__version__ = "0.1.0"
