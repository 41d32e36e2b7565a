"""Pure-JAX physics of the chip: neurons and activations, devices, periphery.

Every function here is pure, acts on whole arrays, and draws noise only from explicit keys.
"""

from ._activations import ACTIVATIONS as ACTIVATIONS
from ._activations import Activation as Activation
from ._activations import activation_fn as activation_fn
from ._activations import is_holomorphic as is_holomorphic
