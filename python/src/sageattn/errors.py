"""Exceptions raised for the C library's statuses."""

from ._capi import Status


class SageError(RuntimeError):
    """A sageattn call failed. ``status`` is the C status, ``str(err)`` carries the C message."""

    def __init__(self, status, message):
        self.status = Status(status)
        self.message = message
        super().__init__(f"{message} [{self.status.name}]")


class SageArgumentError(SageError, ValueError):
    """The arguments are invalid (shape, stride, overlap, scale, workspace...)."""


class SageUnsupportedError(SageError, NotImplementedError):
    """Valid arguments that this build or device cannot run (head dim, dtype, no CUDA...)."""


class SageCudaError(SageError):
    """A CUDA runtime call or kernel launch failed."""


_UNSUPPORTED = {Status.ERR_HEAD_DIM, Status.ERR_UNSUPPORTED, Status.ERR_NO_CUDA, Status.ERR_NO_DEVICE}


def error_for(status, message):
    """The exception for a non-OK status and its C message."""
    status = Status(status)
    if status == Status.ERR_CUDA:
        return SageCudaError(status, message)
    if status in _UNSUPPORTED:
        return SageUnsupportedError(status, message)
    return SageArgumentError(status, message)
