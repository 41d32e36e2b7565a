"""Studies built on the controller and the emulator: gradcheck, training, sweeps, records."""

from ._fit_device import FIT_MODELS as FIT_MODELS
from ._fit_device import FitResult as FitResult
from ._fit_device import fit_device as fit_device
from ._fit_device import read_measurements as read_measurements
from ._fit_device import result_card_yaml as result_card_yaml
from ._gradcheck import GradcheckResult as GradcheckResult
from ._gradcheck import cosine as cosine
from ._gradcheck import gradcheck as gradcheck
from ._gradcheck import random_batch as random_batch
from ._overrides import with_overrides as with_overrides
from ._record import Record as Record
from ._train import TrainOptions as TrainOptions
from ._train import TrainResult as TrainResult
from ._train import train as train
