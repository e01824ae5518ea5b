"""Sphinx configuration: ``python -m sphinx -W -b html docs docs/_build/html`` (warnings are errors)."""

import matplotlib

matplotlib.use("Agg")

import noether_sim  # noqa: E402  (installed: pip install -e '.[docs]')

project = "noether_sim"
author = "the noether_sim authors"
copyright = "2026, the noether_sim authors"
release = version = noether_sim.__version__

extensions = [
    "myst_parser",
    "numpydoc",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx_gallery.gen_gallery",
    "sphinxarg.ext",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build"]
myst_enable_extensions = ["dollarmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

autosummary_generate = True
autodoc_default_options = {"members": False}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False


def _scrape_figures(block, block_vars, gallery_conf):
    """The package draws without pyplot (plain ``matplotlib.figure.Figure``): pick up the figures an
    example binds to its variables, once each."""
    from matplotlib.figure import Figure
    from sphinx_gallery.scrapers import figure_rst

    seen = gallery_conf.setdefault("_noether_seen", set())
    paths = []
    for value in list(block_vars["example_globals"].values()):
        if isinstance(value, Figure) and id(value) not in seen:
            seen.add(id(value))
            path = next(block_vars["image_path_iterator"])
            value.savefig(path, dpi=110)
            paths.append(path)
    return figure_rst(paths, gallery_conf["src_dir"])


sphinx_gallery_conf = {
    "examples_dirs": ["../figures"],
    "gallery_dirs": ["gallery"],
    "filename_pattern": r"/(drift|loss)_",
    "ignore_pattern": r"__init__\.py|^stochastic\.py$",  # stochastic.py: a script writing PNGs, not an example
    "image_scrapers": (_scrape_figures,),
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
}

html_theme = "pydata_sphinx_theme"
html_title = "noether_sim"
html_static_path = []
html_theme_options = {
    "navigation_depth": 2,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
}

# the gallery's scraper is a function, which Sphinx cannot pickle into its environment cache
suppress_warnings = ["config.cache"]
