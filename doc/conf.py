"""Sphinx configuration of the sklearn-sparse-mlp documentation.

Build (from the repository root, after ``pip install ".[doc]"``)::

    sphinx-build -W -b html doc doc/_build/html

The layout follows scikit-learn-contrib's project-template and skglm: numpydoc
docstrings, an autosummary API page, a sphinx-gallery of ``examples/plot_*.py``
and intersphinx links to scikit-learn, NumPy and SciPy.
"""

import sys
import zlib
from pathlib import Path

import sklearn

import sklearn_sparse_mlp

DOC = Path(__file__).resolve().parent
sys.path.insert(0, str(DOC / "sphinxext"))  # gallery_order

# -- Project -----------------------------------------------------------------
project = "sklearn-sparse-mlp"
author = "sklearn-sparse-mlp developers"
copyright = "2025, sklearn-sparse-mlp developers"
release = sklearn_sparse_mlp.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "auto_examples/*.ipynb", "auto_examples/*.py", "auto_examples/*.zip"]
root_doc = "index"
default_role = "literal"  # `text` renders as code, never as an unresolved cross-reference

# -- autodoc, autosummary, numpydoc ------------------------------------------
autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": True}
autodoc_typehints = "none"
# numpydoc lists the methods itself unless told not to; autosummary's class
# template (doc/_templates/autosummary/class.rst) already does, with stubs.
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True

# -- HTML --------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"sklearn-sparse-mlp {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    # The page's table of contents on the right, except on the example pages,
    # which keep the full width for their code and figures.
    "secondary_sidebar_items": {
        **{page: ["page-toc"] for page in ("index", "user_guide", "paper", "api", "changelog")},
        "generated/*": ["page-toc"],
        "auto_examples/*": [],
    },
}
html_sidebars = {"index": [], "changelog": [], "paper": [], "user_guide": []}
html_show_sourcelink = False

# -- sphinx-gallery ------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": str(DOC.parent / "examples"),
    "gallery_dirs": str(DOC / "auto_examples"),
    "filename_pattern": r"/plot_",
    "doc_module": ("sklearn_sparse_mlp",),
    "backreferences_dir": str(DOC / "generated" / "backreferences"),
    "image_scrapers": ("matplotlib",),
    "within_subsection_order": "gallery_order.ExampleOrder",
    "remove_config_comments": True,
    "min_reported_time": 0,
    "show_memory": False,
    "matplotlib_animations": False,
    # Every example must run; a failing one fails the build.
    "abort_on_example_error": True,
    "only_warn_on_example_error": False,
}

# -- intersphinx, robust to an offline build ----------------------------------
# Sphinx fetches each project's ``objects.inv`` when the build starts.  When
# *every* location of a project fails (no network, as on this project's CI),
# it logs "failed to reach any of the inventories" as a WARNING without a
# type, which ``suppress_warnings`` cannot silence and which ``-W`` turns into
# an error.  When at least one location works, failures are logged at INFO.
# So each project gets two locations: the real inventory online, then a small
# local inventory that this file writes (below) from the installed packages.
# Online, the full real inventory wins; offline, the local one still resolves
# the scikit-learn, NumPy and SciPy names that these pages and their examples
# use, with links to the same online pages.  A name missing from it renders
# as plain code (intersphinx misses are not warnings unless nitpicky).
intersphinx_timeout = 10
FALLBACK = DOC / "_build" / "intersphinx_fallback"


def _write_inventory(path, project_name, project_version, entries):
    """Write a Sphinx v2 ``objects.inv`` from ``(name, role, uri, dispname)``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    head = (
        "# Sphinx inventory version 2\n"
        f"# Project: {project_name}\n"
        f"# Version: {project_version}\n"
        "# The remainder of this file is compressed using zlib.\n"
    )
    body = "".join(f"{name} {role} 1 {uri} {disp}\n" for name, role, uri, disp in entries)
    path.write_bytes(head.encode() + zlib.compress(body.encode()))


def _sklearn_entries():
    """Every object in ``__all__`` of scikit-learn's public modules, on its
    ``modules/generated`` API page, plus the labels and glossary terms that
    the inherited docstrings (``score``, ``set_fit_request``...) refer to."""
    import importlib
    import inspect

    entries = []
    for mod_name in sorted(sklearn.__all__):
        if mod_name.startswith("_"):
            continue
        try:
            module = importlib.import_module(f"sklearn.{mod_name}")
        except ImportError:
            continue
        for name in getattr(module, "__all__", []):
            try:
                obj = getattr(module, name)
            except (AttributeError, ImportError):  # e.g. experimental estimators
                continue
            full = f"sklearn.{mod_name}.{name}"
            role = "py:class" if inspect.isclass(obj) else "py:function"
            entries.append((full, role, f"modules/generated/{full}.html#$", "-"))
    entries += [
        ("sklearn.set_config", "py:function", "modules/generated/sklearn.set_config.html#$", "-"),
        ("metadata_routing", "std:label", "metadata_routing.html#metadata-routing", "Metadata Routing"),
        ("r2_score", "std:label", "modules/model_evaluation.html#r2-score", "R² score"),
        ("accuracy_score", "std:label", "modules/model_evaluation.html#accuracy-score", "Accuracy score"),
        ("meta-estimator", "std:term", "glossary.html#term-meta-estimator", "meta-estimator"),
    ]
    return entries


def _generated(prefix, names, role):
    """Entries on NumPy's and SciPy's ``reference/generated`` pages."""
    return [(f"{prefix}.{n}", role, f"reference/generated/{prefix}.{n}.html#$", "-") for n in names]


_write_inventory(FALLBACK / "sklearn.inv", "scikit-learn", sklearn.__version__, _sklearn_entries())
_write_inventory(
    FALLBACK / "numpy.inv", "NumPy", "",
    _generated("numpy", ["ndarray", "float32", "float64"], "py:class")
    + _generated("numpy", ["dot", "matmul", "unique", "nonzero"], "py:function")
    + [("numpy.random.RandomState", "py:class", "reference/random/legacy.html#$", "-")],
)
_write_inventory(
    FALLBACK / "scipy.inv", "SciPy", "",
    _generated("scipy", ["sparse.csr_array", "sparse.csr_matrix", "sparse.csc_matrix"], "py:class")
    + _generated("scipy", ["sparse.issparse"], "py:function"),
)

intersphinx_mapping = {
    "sklearn": ("https://scikit-learn.org/stable/", (None, str(FALLBACK / "sklearn.inv"))),
    "numpy": ("https://numpy.org/doc/stable/", (None, str(FALLBACK / "numpy.inv"))),
    "scipy": ("https://docs.scipy.org/doc/scipy/", (None, str(FALLBACK / "scipy.inv"))),
}
