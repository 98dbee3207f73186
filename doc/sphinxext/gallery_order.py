"""Order of the examples in the gallery: from first use to the paper's topics."""

ORDER = [
    "plot_quick_start.py",
    "plot_grid_search_budget.py",
    "plot_reading_network.py",
    "plot_planted_recovery.py",
    "plot_memory_iht_vs_imp.py",
    "plot_image_fitting.py",
]


class ExampleOrder:
    """Sort key for ``within_subsection_order``: the order of ``ORDER``, then
    any other example by file name."""

    def __init__(self, src_dir):
        self.src_dir = src_dir

    def __call__(self, filename):
        rank = ORDER.index(filename) if filename in ORDER else len(ORDER)
        return rank, filename

    def __repr__(self):  # stable, so that Sphinx's cached config compares equal
        return f"<{type(self).__name__}>"
