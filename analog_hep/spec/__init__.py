"""Circuit and device-card specs: YAML in, validated frozen pydantic models out.

``load_circuit("toy")`` gives a :class:`Circuit` (the :class:`CircuitSpec` plus the
:class:`DeviceCard` of every crossbar); every problem in a file is one :class:`SpecError` line
``FILE:LINE: FIELD.PATH: expected ..., found ...``.
"""

from ._base import FieldError as FieldError
from ._base import SpecModel as SpecModel
from ._circuit import DEFAULT_TRAINING as DEFAULT_TRAINING
from ._circuit import SEED_MAX as SEED_MAX
from ._circuit import AccumulatorBits as AccumulatorBits
from ._circuit import ActivationSpec as ActivationSpec
from ._circuit import BlockSpec as BlockSpec
from ._circuit import CircuitSpec as CircuitSpec
from ._circuit import ConvBlockSpec as ConvBlockSpec
from ._circuit import CrossbarSpec as CrossbarSpec
from ._circuit import CrossbarsSpec as CrossbarsSpec
from ._circuit import DenseBlockSpec as DenseBlockSpec
from ._circuit import DynamicsSpec as DynamicsSpec
from ._circuit import InitSpec as InitSpec
from ._circuit import MappingSpec as MappingSpec
from ._circuit import MixedPrecisionSpec as MixedPrecisionSpec
from ._circuit import NeuronSpec as NeuronSpec
from ._circuit import OptimizerSpec as OptimizerSpec
from ._circuit import PeripherySpec as PeripherySpec
from ._circuit import ReadoutSpec as ReadoutSpec
from ._circuit import Seed as Seed
from ._circuit import TrainingSpec as TrainingSpec
from ._circuit import seed_problem as seed_problem
from ._device import ConductanceSpec as ConductanceSpec
from ._device import ConstantStepResponse as ConstantStepResponse
from ._device import DeviceCard as DeviceCard
from ._device import DriftSpec as DriftSpec
from ._device import ExpStepResponse as ExpStepResponse
from ._device import FaultSpec as FaultSpec
from ._device import IdealResponse as IdealResponse
from ._device import LinearStepResponse as LinearStepResponse
from ._device import PiecewiseResponse as PiecewiseResponse
from ._device import PowStepResponse as PowStepResponse
from ._device import RefreshSpec as RefreshSpec
from ._device import ResponseSpec as ResponseSpec
from ._device import SoftBoundsResponse as SoftBoundsResponse
from ._device import SourceSpec as SourceSpec
from ._load import Circuit as Circuit
from ._load import circuit_from_text as circuit_from_text
from ._load import load_any as load_any
from ._load import load_circuit as load_circuit
from ._load import load_device as load_device
from ._load import parse_spec as parse_spec
from ._memory import MemoryEstimate as MemoryEstimate
from ._memory import available_memory as available_memory
from ._memory import check_fits as check_fits
from ._memory import estimate_memory as estimate_memory
from ._memory import format_bytes as format_bytes
from ._resolve import available_circuits as available_circuits
from ._resolve import available_devices as available_devices
from ._resolve import find_circuit as find_circuit
from ._resolve import find_device_card as find_device_card
from ._tiki_taka import TikiTakaSpec as TikiTakaSpec
from ._yaml import KeyPath as KeyPath
from ._yaml import format_path as format_path
from ._yaml import line_of as line_of
from ._yaml import load_yaml as load_yaml
from ._yaml import read_yaml as read_yaml
