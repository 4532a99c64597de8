"""`.keras` files saved before the layout change (commit 1b36b2f, flat modules) still load and
compute what they computed then: registered names (`lsnet>Name`) do not depend on modules."""

from pathlib import Path

import keras
import numpy as np
import pytest

import lsnet_keras  # noqa: F401  (registers the layers)

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize("form", ["training", "deploy", "qat_edgetpu"])
def test_files_saved_by_the_flat_layout_load_and_compute_the_same(form):
    saved = np.load(FIXTURES / "saved_by_1b36b2f.npz")
    model = keras.models.load_model(FIXTURES / f"saved_by_1b36b2f_{form}.keras")
    np.testing.assert_allclose(
        np.asarray(model(saved["input"], training=False)), saved[form], rtol=0, atol=1e-5
    )
