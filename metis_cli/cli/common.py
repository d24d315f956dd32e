"""The pieces every Typer command shares: error handling and the app class that applies it.

Commands raise :class:`MetisError` for anything a user can fix; the command class prints the message on
stderr without a traceback and exits with status 1.
"""

import typer
from typer.core import TyperCommand, TyperGroup

from metis_cli.errors import MetisError


class MetisCommand(TyperCommand):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except MetisError as exc:
            _fail(str(exc))
        except OSError as exc:
            import errno

            # the file system refused (full disk, quota, read-only, permissions): say where and why, no traceback
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES):
                raise
            from metis_cli.files import write_failure

            _fail(write_failure(exc.filename or "output", exc))


def _fail(message: str):
    from metis_cli.log import err_console

    err_console.print(f"[bold red]error:[/] {message}", markup=True, highlight=False, soft_wrap=True)
    raise typer.Exit(1) from None


class MetisTyper(typer.Typer):
    """A Typer app whose commands report MetisError cleanly; help shows examples verbatim."""

    def __init__(self, **kwargs):
        kwargs.setdefault("cls", TyperGroup)
        kwargs.setdefault("no_args_is_help", True)
        kwargs.setdefault("rich_markup_mode", "rich")
        kwargs.setdefault("context_settings", {"help_option_names": ["-h", "--help"]})
        kwargs.setdefault("pretty_exceptions_show_locals", False)
        super().__init__(**kwargs)

    def command(self, *args, **kwargs):
        kwargs.setdefault("cls", MetisCommand)
        return super().command(*args, **kwargs)


PRINT_CONFIG = typer.Option(
    False,
    "--print-config",
    help="Print the config (YAML, overrides, the code's defaults; model sizes come from the data) and exit.",
)

CHECK_CONFIG = typer.Option(
    False,
    "--check-config",
    help="Print how the config (with the overrides) differs from the one EXP_DIR's run was trained with, one "
    "'key: trained -> now' per line, and exit (nothing printed: the same).",
)


def print_config(config: dict) -> None:
    """``--print-config``: the resolved config as YAML on stdout."""
    import yaml

    from metis_cli.config import plain

    print(yaml.safe_dump(plain(config), sort_keys=False), end="")


def require_train_data(train_data) -> None:
    """The check a trainer command makes of its ``--train-data`` option (a dir or a list of dirs)."""
    from metis_cli.errors import MetisError

    if not train_data:
        raise MetisError("give the training data: --train-data DIR")


def run_trainer(
    config_path,
    overrides,
    resolve,
    exp_dir,
    train,
    *,
    show=False,
    check=False,
    overwrite=False,
    verbose=False,
    adjust=None,
    require=None,
):
    """The body a trainer command shares: the config loaded (YAML, the code's defaults, ``key=value``
    overrides) and, with ``show`` (--print-config), printed instead of trained; with ``check`` (--check-config)
    its differences from the config the exp dir's run was trained with are printed instead, one per line;
    ``overwrite`` clears the exp dir first; logs go to ``<exp_dir>/log/train.log``; ``train(config)`` runs and
    its step, minutes and last metrics are printed. ``adjust(config)`` changes the loaded config first (settings
    the command's options give; the result is resolved again); ``require()`` checks the command's inputs after
    --print-config and before anything is written. Returns ``train``'s result (None when only printed)."""
    from metis_cli.config import load_config
    from metis_cli.log import console, setup_logging
    from metis_cli.train.trainer import clear_exp_dir, trained_config_differences

    loaded = load_config(config_path, overrides or [], resolve=resolve)
    if adjust is not None:
        loaded = adjust(loaded)
    if show or check:  # printed instead of trained
        resolved = resolve(loaded) if adjust is not None else loaded
        if show:
            print_config(resolved)
        else:
            for line in trained_config_differences(exp_dir, resolved, resolve=resolve):
                print(line)
        return None
    if require is not None:
        require()
    if overwrite:
        clear_exp_dir(exp_dir)
    setup_logging(verbose, log_file=exp_dir / "log" / "train.log")
    result = train(loaded)
    console.print(
        f"{exp_dir}: step {result['step']} ({result['seconds'] / 60:.1f} min); "
        + " ".join(f"{k}={v:.4g}" for k, v in result.get("last", {}).items())
    )
    return result
