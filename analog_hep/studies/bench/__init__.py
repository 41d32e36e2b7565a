"""The training-step benchmark against this machine's matrix-product and convolution rates."""

from ._bench import CASES as CASES
from ._bench import QUICK_CASES as QUICK_CASES
from ._conv_bench import ConvBenchCase as ConvBenchCase
from ._conv_bench import conv_bench_case as conv_bench_case
