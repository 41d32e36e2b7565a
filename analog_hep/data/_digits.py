"""scikit-learn's 8x8 digits, split once and for all.

The data ship inside scikit-learn, so this dataset works offline and is what tests and quick
runs use. The split is fixed (stratified, 20 % test, seed 0) so that results from different
runs and machines are comparable.
"""

from __future__ import annotations

import numpy as np

__all__ = ["DIGITS_DESCRIPTION", "load_digits_split"]

DIGITS_DESCRIPTION = (
    "scikit-learn load_digits (1797 8x8 grey-level images of handwritten digits 0-9, UCI "
    "optdigits), 64 features = pixel / 16 in [0, 1]; fixed stratified split "
    "sklearn.model_selection.train_test_split(test_size=0.2, stratify=y, random_state=0): "
    "1437 train / 360 test"
)


def load_digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The digits split as ``(x_train, y_train, x_test, y_test)``.

    ``x_*``: float32, shape (n, 64), values in [0, 1] (pixels 0..16 divided by 16);
    ``y_*``: int32, shape (n,), values 0..9. n is 1437 for train and 360 for test.
    """
    # Imported here: scikit-learn takes about a second to import and only this dataset
    # needs it.
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    y = y.astype(np.int32)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.2, stratify=y, random_state=0
    )
    return x_train, y_train, x_test, y_test
