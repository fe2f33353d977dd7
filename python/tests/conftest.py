"""pytest setup: report which library and torch the run uses (reference.py is importable from the
tests because pytest puts this folder on sys.path)."""


def pytest_report_header(config):
    """Library path and version, torch version and CUDA availability (or why torch tests skip)."""
    import sageattn

    try:
        lines = [f"sageattn {sageattn.__version__}: library {sageattn.library_path()} (C {sageattn.version()})"]
    except sageattn.LibraryNotFoundError as e:
        lines = [str(e)]
    try:
        import torch
    except ImportError as e:
        lines.append(f"torch: not installed ({e}); the torch and GPU tests are skipped")
    else:
        lines.append(f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}")
    return lines
