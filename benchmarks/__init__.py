"""The benchmark suite of sklearn-sparse-mlp (``python -m benchmarks --quick|--full``)."""
