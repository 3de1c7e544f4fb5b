"""What the terminal shows of a run, in one place.

mmengine writes everything it logs to both the terminal and the run's log file: the
whole config (hundreds of lines), the environment, the order of every hook and one
line per parameter of the optimiser's paramwise options, before the first progress
line. Here the log file keeps all of it, and the terminal gets a short header
(:func:`mmseg_dida.apis.launch.header`) and then the progress: :class:`ConsoleFilter`
drops the dumps from the console handlers of the runner's logger
(:func:`attach_console_filter`, used by :class:`~mmseg_dida.engine.runner.UDARunner`),
and :data:`THIRD_PARTY_DEPRECATIONS` names the deprecation warnings of mmseg / mmengine
that a user cannot act on; they are silenced here and nowhere else
(:func:`silence_third_party_deprecations`).
"""
import logging
import re
import warnings
from typing import Optional

from mmengine.runner import Runner

__all__ = ['ConsoleFilter', 'attach_console_filter', 'THIRD_PARTY_DEPRECATIONS',
           'silence_third_party_deprecations', 'log_file_of']

#: start of the messages that go to the log file only
LOG_FILE_ONLY = (
    'Config:',  # the config dump
    'Hooks will be executed in the following order',
    'paramwise_options -- ',
    'Distributed training is not used, all SyncBatchNorm',
)
#: the environment dump starts with a dashed line and holds this
ENVIRONMENT_MARK = 'System environment:'
#: deprecations of the libraries under this project, by the start of their message
THIRD_PARTY_DEPRECATIONS = (
    '``build_loss`` would be deprecated soon',  # mmseg
    'Default ``avg_non_ignore`` is False',  # mmseg
    '"FileClient" will be deprecated in future',  # mmengine
    '"HardDiskBackend" is the alias of "LocalBackend"',  # mmengine
)


class ConsoleFilter(logging.Filter):
    """Drops the dumps (:data:`LOG_FILE_ONLY`, the environment) and the third-party
    deprecations from a console handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        text = msg.lstrip('\n')
        if text.startswith(LOG_FILE_ONLY) or text.startswith(THIRD_PARTY_DEPRECATIONS):
            return False
        return not (msg.startswith('\n') and ENVIRONMENT_MARK in msg[:200])


def silence_third_party_deprecations() -> None:
    """Python warnings of :data:`THIRD_PARTY_DEPRECATIONS` are not shown."""
    for start in THIRD_PARTY_DEPRECATIONS:
        warnings.filterwarnings('ignore', message=re.escape(start))


def attach_console_filter(logger: logging.Logger) -> logging.Logger:
    """Add :class:`ConsoleFilter` to the console handlers of ``logger`` (not to its
    file handler) and return it."""
    for handler in logger.handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(
                handler, logging.FileHandler):
            if not any(isinstance(f, ConsoleFilter) for f in handler.filters):
                handler.addFilter(ConsoleFilter())
    return logger


def log_file_of(runner: Runner) -> Optional[str]:
    """The path of the runner's log file (None if it has none)."""
    for handler in runner.logger.handlers:
        if isinstance(handler, logging.FileHandler):
            return handler.baseFilename
    return None
