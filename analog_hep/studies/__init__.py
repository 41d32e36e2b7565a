"""Studies built on the controller and the emulator: gradcheck, training, sweeps, records."""

from ._gradcheck import GradcheckResult as GradcheckResult
from ._gradcheck import cosine as cosine
from ._gradcheck import gradcheck as gradcheck
from ._gradcheck import random_batch as random_batch
from ._overrides import with_overrides as with_overrides
from ._record import Record as Record
from ._train import TrainOptions as TrainOptions
from ._train import TrainResult as TrainResult
from ._train import train as train
