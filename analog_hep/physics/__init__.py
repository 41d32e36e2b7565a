"""Pure-JAX physics of the chip: neurons and activations, devices, periphery.

Every function here is pure, acts on whole arrays, and draws noise only from explicit keys.
"""

from ._activations import ACTIVATIONS as ACTIVATIONS
from ._activations import Activation as Activation
from ._activations import activation_fn as activation_fn
from ._activations import is_holomorphic as is_holomorphic
from ._complex import shifted_sigmoid_parts as shifted_sigmoid_parts
from ._complex import sincos as sincos
from ._device_array import DeviceArray as DeviceArray
from ._device_array import draw_devices as draw_devices
from ._device_array import normalised_scale_S as normalised_scale_S
from ._device_array import program_conductance as program_conductance
from ._device_array import quantise_levels as quantise_levels
from ._drift import drift_conductance as drift_conductance
from ._drift import read_conductance as read_conductance
from ._noise import gaussian as gaussian
from ._pair import RefreshReport as RefreshReport
from ._pair import maybe_refresh as maybe_refresh
from ._pair import pair_weights as pair_weights
from ._pair import refresh_pair as refresh_pair
from ._program import WriteVerifyReport as WriteVerifyReport
from ._program import write_verify as write_verify
from ._pulse import PulseStats as PulseStats
from ._pulse import apply_delta_exact as apply_delta_exact
from ._pulse import apply_pulse_counts as apply_pulse_counts
from ._pulse import expected_step_S as expected_step_S
from ._pulse import has_c2c_noise as has_c2c_noise
from ._pulse import n_pulses as n_pulses
from ._pulse import pulse_noise_S as pulse_noise_S
from ._pulse import pulse_step as pulse_step
from ._transfer import TransferReport as TransferReport
from ._transfer import buffer_pulses as buffer_pulses
from ._transfer import chopper_signs as chopper_signs
from ._transfer import read_columns as read_columns
from ._transfer import transfer as transfer
from ._transfer import transfer_mask as transfer_mask
from ._update import UpdateReport as UpdateReport
from ._update import coincidence_step as coincidence_step
from ._update import default_scheme as default_scheme
from ._update import outer_product_update as outer_product_update
from ._write_noise import resample_visible as resample_visible
from ._write_noise import visible_conductance as visible_conductance
from ._write_noise import write_noise_std_S as write_noise_std_S
