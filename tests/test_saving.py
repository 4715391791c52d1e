"""Model files: plain Keras loads what ktransfer writes, `import ktransfer` covers the rest, and
corrupt files are one line naming the file."""

from __future__ import annotations

import json
import subprocess
import sys

import keras
import numpy as np
import pytest

from ktransfer.deploy.saving import load_model
from ktransfer.errors import KtransferError
from ktransfer.network.heads import FirstToken
from ktransfer.training import train

from conftest import REPO

PREDICT = ("import json, numpy as np, keras; m = keras.saving.load_model({path!r}); "
           "x = np.random.default_rng(0).uniform(0, 255, (2, 16, 16, 3)).astype('float32'); "
           "print(json.dumps(m.predict(x, verbose=0).tolist()))")


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO.parent, timeout=300)


@pytest.mark.slow  # a run, then a fresh Python per preprocessing: make test-slow
@pytest.mark.parametrize("preprocess", ["caffe", "torch"])
def test_a_trained_model_loads_with_plain_keras_without_ktransfer(tiny_config, preprocess):
    result = train(tiny_config(preprocess=preprocess, fine_tune_epochs=1))
    path = str(result.run_dir / "model.keras")
    blocked = "import sys; sys.modules['ktransfer'] = None; "  # as if not installed
    ran = _python(blocked + PREDICT.format(path=path))
    assert ran.returncode == 0, ran.stderr[-2000:]
    x = np.random.default_rng(0).uniform(0, 255, (2, 16, 16, 3)).astype("float32")
    np.testing.assert_allclose(json.loads(ran.stdout.splitlines()[-1]),
                               result.model.predict(x, verbose=0), atol=1e-6)
    assert not (result.run_dir / "model.keras").stat().st_size > 3 * sum(
        w.nbytes for w in result.model.get_weights()) + 200_000  # no optimizer state inside


@pytest.mark.slow  # a fresh Python per layer: make test-slow
def test_import_ktransfer_is_enough_for_its_own_layers(tmp_path):
    inputs = keras.Input((5, 4))
    path = tmp_path / "cls.keras"
    keras.Model(inputs, FirstToken()(inputs)).save(path)
    load = f"keras.saving.load_model({str(path)!r}); print('loaded')"
    # One process: plain Keras cannot load it, and after `import ktransfer` it can.
    ran = _python(f"import keras\ntry:\n    {load}\nexcept Exception as exc:\n"
                  f"    print('refused', 'FirstToken' in str(exc))\nimport ktransfer\n{load}")
    assert ran.stdout.split() == ["refused", "True", "loaded"], ran.stderr[-2000:]
    ran = _python(f"import ktransfer, tensorflow, keras; {load}")  # TensorFlow imported after
    assert ran.returncode == 0 and "loaded" in ran.stdout, ran.stderr[-2000:]


def test_truncated_or_corrupt_model_files_are_one_line(tmp_path, tiny_config):
    data = (train(tiny_config()).run_dir / "model.keras").read_bytes()
    (tmp_path / "half.keras").write_bytes(data[: len(data) // 2])
    flipped = data[:2000] + bytes(b ^ 0xFF for b in data[2000:4000]) + data[4000:]
    (tmp_path / "flipped.keras").write_bytes(flipped)
    for name in ("half.keras", "flipped.keras"):
        with pytest.raises(KtransferError) as info:
            load_model(tmp_path / name)
        assert str(info.value).startswith(f"--model: '{tmp_path / name}'")
        assert "\n" not in str(info.value) and len(str(info.value)) < 400


def _double(t):
    return t * 2


@pytest.mark.parametrize("nested", [False, True])
def test_code_in_a_model_file_is_named_before_keras_reads_it(tmp_path, nested):
    """A Lambda anywhere (here inside a Sequential, or inside a nested model) is named as code
    and points at --unsafe_load; on ce06f12 a Sequential's came out as "truncated or corrupt"
    (Keras 3.15 raises TypeError there). A Lambda of a named function the file cannot carry
    says so with --unsafe_load too."""
    inner = keras.Sequential([keras.Input((4,)), keras.layers.Lambda(_double, name="code")])
    model = (keras.Sequential([keras.Input((4,)), inner, keras.layers.Dense(2)]) if nested
             else keras.Sequential([keras.Input((4,)), keras.layers.Lambda(_double, name="code"),
                                    keras.layers.Dense(2)]))
    model.save(tmp_path / "m.keras")
    with pytest.raises(KtransferError, match=r"^--model: .* contains code \(a Lambda layer "
                       r"named 'code'\); load it only if you trust it, with --unsafe_load$"):
        load_model(tmp_path / "m.keras")
    with pytest.raises(KtransferError, match=r"calls the Python function '_double', which the "
                       r"file does not hold: .*register_keras_serializable"):
        load_model(tmp_path / "m.keras", unsafe=True)


IMPORT_FIRST = r"""
import json, os, sys
failed = {}
for module in sys.argv[1:]:
    pid = os.fork()
    if pid == 0:  # a child that has imported nothing of Keras yet
        try:
            __import__(module)
        except Exception as exc:
            print(f"{module}: {type(exc).__name__}: {exc}", file=sys.stderr)
            os._exit(1)
        os._exit(0)
    if os.waitpid(pid, 0)[1]:
        failed[module] = True
print(json.dumps(sorted(failed)))
"""


@pytest.mark.slow  # each module in a child that imports TensorFlow: about 5 s each
def test_each_module_imports_first_in_a_fresh_interpreter():
    """Importing Keras registers ktransfer's Keras classes (ktransfer.serializables); when a
    module's own `import keras` starts that, the classes' modules must not need names the
    module has not defined yet. On ce06f12 `import ktransfer.text.prediction` (or
    ktransfer.tasks.task) first failed with a circular ImportError (network.heads took Task
    from the half-imported tasks.task)."""
    modules = ["ktransfer.tasks.task", "ktransfer.text.prediction", "ktransfer.text.sources",
               "ktransfer.tasks.single_label", "ktransfer.network.heads",
               "ktransfer.deploy.prediction", "ktransfer.image.sources"]
    done = _python(IMPORT_FIRST.replace("sys.argv[1:]", repr(modules)))
    assert done.returncode == 0 and json.loads(done.stdout.splitlines()[-1]) == [], \
        done.stderr[-3000:]
