"""numpydoc validation of every public docstring of the package.

Every public class, each of its public methods (inherited ones included) and
every public function is checked with ``numpydoc.validate``.  numpydoc is not
a test dependency (it comes with the ``doc`` extra): without it these tests
are skipped.  The docstrings' Examples sections run as doctests in CI
(``pytest --doctest-modules sklearn_sparse_mlp``, in ``.ci/run``).
"""

import importlib
import inspect
from pathlib import Path

import pytest

numpydoc_validation = pytest.importorskip("numpydoc.validate")

import sklearn_sparse_mlp  # noqa: E402

PUBLIC_MODULES = ["sklearn_sparse_mlp", "sklearn_sparse_mlp.datasets", "sklearn_sparse_mlp.metrics"]

# Checks ignored everywhere, and why:
# - RT02 "the first line of the Returns section should contain only the type":
#   we name what is returned (``self : SparseMLPRegressor``, ``psnr : float``)
#   as scikit-learn does; the name is what the description then refers to.
IGNORED = {"RT02"}

# Checks ignored for methods only (scikit-learn's policy too): a method's
# docstring is short, and the class docstring carries the extended summary
# (ES01) and the See Also section (SA01).
IGNORED_FOR_METHODS = {"ES01", "SA01"}

# Checks ignored for methods inherited from scikit-learn (get_params, score,
# set_fit_request...): their docstrings are scikit-learn's, which has no
# Examples section in them (EX01).  Methods written in this package must have
# an Examples section.
IGNORED_FOR_INHERITED = {"EX01"}


def _public_objects():
    """(import path, object) of every public class and function."""
    out = []
    for mod_name in PUBLIC_MODULES:
        module = importlib.import_module(mod_name)
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                out.append((f"{mod_name}.{name}", obj))
    return out


def _ours(func):
    return getattr(func, "__module__", "").startswith("sklearn_sparse_mlp")


def _targets():
    """(import path, ignored checks) of every docstring to validate."""
    targets = []
    for path, obj in _public_objects():
        targets.append((path, IGNORED))
        if not inspect.isclass(obj):
            continue
        for name, member in inspect.getmembers(obj):
            if name.startswith("_") or not callable(member):
                continue
            ignored = IGNORED | IGNORED_FOR_METHODS
            if not _ours(member):
                ignored = ignored | IGNORED_FOR_INHERITED
            targets.append((f"{path}.{name}", ignored))
    return targets


TARGETS = _targets()


def test_targets_cover_the_public_api():
    paths = {path for path, _ in TARGETS}
    for cls in ("SparseMLPRegressor", "SparseMLPClassifier", "IMPRegressor", "IMPClassifier"):
        assert f"sklearn_sparse_mlp.{cls}" in paths
        assert f"sklearn_sparse_mlp.{cls}.fit" in paths
    assert "sklearn_sparse_mlp.datasets.make_planted_mlp" in paths
    assert "sklearn_sparse_mlp.metrics.psnr_score" in paths


@pytest.mark.parametrize("path, ignored", TARGETS, ids=[path for path, _ in TARGETS])
def test_docstring(path, ignored):
    result = numpydoc_validation.validate(path)
    errors = [f"{code}: {message}" for code, message in result["errors"] if code not in ignored]
    assert not errors, f"{path}:\n" + "\n".join(errors)


def test_api_page_lists_every_public_object():
    # The API reference (doc/api.rst) is written by hand: it must not miss a
    # public class or function.  Skipped outside a source checkout.
    api = Path(__file__).resolve().parents[1] / "doc" / "api.rst"
    if not api.is_file():
        pytest.skip("doc/api.rst is not available")
    text = api.read_text()
    missing = [path for path, _ in _public_objects() if f"   {path.rsplit('.', 1)[1]}\n" not in text]
    assert not missing, f"doc/api.rst does not list {missing}"
