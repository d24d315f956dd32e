"""Training machinery shared by every model of the toolkit (codec, stage-1 model, S2A, fine-tuning).

A *learner* (``PretrainLearner``, ``S2ALearner``, ``FinetuneLearner``, ``CodecLearner``, ...) owns its models,
optimizers and step logic; the ``Trainer`` runs the loop around it:

- experiment dir: ``config.yaml`` (resolved), ``command.txt``, ``git_revision.txt``, ``log/train.log``,
  ``metrics.jsonl``, ``checkpoints/step_<N>/`` and ``val/step_<N>/`` (a few decoded examples);
- checkpoints: each model's weights as ``<name>.safetensors`` plus ``trainer_state.pt`` (optimizers,
  schedulers, step; loaded with ``weights_only=True``), written to a temporary folder and renamed, so a
  killed run never leaves half a checkpoint; an unreadable newest checkpoint falls back to the one before;
- exact resume: every random choice of step N (data, masking, dropout) is seeded by (seed, N, rank), so a
  resumed run repeats the steps it would have taken;
- ``torchrun`` DDP (NCCL on GPUs, gloo on CPUs), bf16 autocast on GPUs, gradient accumulation and
  clipping, rich progress, a validation pass every ``val_every`` steps.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from metis_cli.checkpoint import state_dict_mismatch
from metis_cli.config import check_keys, save_config
from metis_cli.env import command_line, git_revision, resolve_cpu_bf16
from metis_cli.errors import MetisError

logger = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    max_steps: int = 1000
    grad_accum: int = 1
    grad_clip: float = 1.0
    log_every: int = 10
    ckpt_every: int = 200
    val_every: int = 200
    keep_checkpoints: int = 3
    seed: int = 0
    bf16: bool = True  # bf16 autocast on GPUs
    # bf16 autocast on CPUs too: true, false, or auto (where the CPU has AVX512-BF16 or AMX: about 1.3x faster there;
    # elsewhere bf16 is emulated, about 25x slower than float32)
    bf16_cpu: bool | str = False
    max_minutes: float | None = None  # stop (with a checkpoint) after this wall time
    gradient_checkpointing: bool = (
        False  # recompute each transformer block in the backward pass: less memory, ~30% more compute
    )

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        check_keys(d, cls, "train config")
        return cls(**d)

    def __post_init__(self):
        if self.bf16_cpu not in (True, False, "auto"):
            raise MetisError(f"train.bf16_cpu is true, false or auto, not {self.bf16_cpu!r}")


# train settings a resumed run may change: how long it runs and how often it logs, validates and saves
RESUMABLE_KEYS = {
    "train.max_steps",
    "train.max_minutes",
    "train.log_every",
    "train.ckpt_every",
    "train.val_every",
    "train.keep_checkpoints",
    "train.bf16_cpu",  # the precision a CPU computes fast: a run moved to another machine may change it
    "decoder.s2a",  # the S2A and codec a fine-tuned model is decoded with (recorded, not trained)
    "decoder.codec",
}


# settings that leave the trained model as it is: how often a run logs, validates and saves, and what it is decoded with
BOOKKEEPING_KEYS = RESUMABLE_KEYS - {"train.max_steps", "train.max_minutes"}


def config_differences(old: dict, new: dict, prefix: str = "", ignore=RESUMABLE_KEYS, unset=(None,)) -> list[str]:
    """``key: old -> new`` for every leaf where two configs differ (dotted keys), except the keys in ``ignore``,
    keys the new config leaves ``unset`` (null: resolved from the data later, e.g. the vocabulary size) and keys
    the old config does not hold (complete it first: ``trained_config_differences``'s ``resolve``)."""
    out = []
    for key in old:
        name, a, b = f"{prefix}{key}", old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_differences(a, b, name + ".", ignore, unset)
        elif a != b and b not in unset and name not in ignore:
            out.append(f"{name}: {a!r} -> {b!r}")
    return out


def trained_config_differences(
    exp_dir, config: dict, ignore=BOOKKEEPING_KEYS, unset=(None, "", []), resolve=None
) -> list[str]:
    """How ``config`` differs from the one the run in ``exp_dir`` was trained with (its config.yaml; nothing when
    there is none or it does not parse). By default the steps count as a difference and keys left empty before
    training (filled from the data: the phone set, the data dirs) do not: what a recipe that finds the model
    finished reports before reusing it. Resuming (``Trainer``) asks with its own ``ignore`` and ``unset``.
    ``resolve`` (the trainer's defaults) completes the saved config first, so that a key added to the code since
    the run counts with the default the run had (when the trained config still resolves)."""
    import yaml

    saved = Path(exp_dir) / "config.yaml"
    if not saved.is_file():
        return []
    try:
        old = yaml.safe_load(saved.read_text()) or {}
    except yaml.YAMLError:
        return []
    if resolve is not None:
        try:
            old = yaml.safe_load(yaml.safe_dump(resolve(old), sort_keys=False)) or {}
        except (MetisError, KeyError, TypeError, ValueError):
            pass  # keys since removed or renamed: compare what was saved
    new = yaml.safe_load(yaml.safe_dump(config, sort_keys=False)) or {}
    return config_differences(old, new, ignore=ignore, unset=unset)


def clear_exp_dir(exp_dir) -> None:
    """``--overwrite``: deletes the experiment dir ``exp_dir`` (what was trained there and decoded with it), so
    a run starts afresh. A folder that is not an experiment dir (no config.yaml) but holds files is refused."""
    exp_dir = Path(exp_dir)
    if not exp_dir.exists():
        return
    if not (exp_dir / "config.yaml").is_file() and any(exp_dir.iterdir()):
        raise MetisError(
            f"--overwrite: {exp_dir} is not an experiment dir (no config.yaml) and is not empty; "
            f"refusing to delete it; give the exp dir a trainer made"
        )
    shutil.rmtree(exp_dir)


class Distributed:
    """torchrun's environment, or a single process."""

    def __init__(self):
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = torch.device(f"cuda:{self.local_rank}" if torch.cuda.is_available() else "cpu")
        if self.world_size > 1 and not torch.distributed.is_initialized():
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            torch.distributed.init_process_group(backend)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            torch.distributed.barrier()

    def close(self) -> None:
        """Ends the process group once every rank is done: a gloo group left to the interpreter's exit can abort
        a rank ("terminate called without an active exception") after its work was saved."""
        if self.world_size > 1 and torch.distributed.is_initialized():
            torch.distributed.barrier()
            torch.distributed.destroy_process_group()


def warmup_cosine(warmup: int, total: int, floor: float):
    """Learning-rate factor of step N: linear warm-up, then a cosine decay to ``floor`` at ``total``."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def step_seed(seed: int, step: int, rank: int = 0, micro: int = 0) -> int:
    return (seed * 1_000_003 + step * 1009 + rank * 101 + micro) % (2**63)


class Trainer:
    """``resolve``: the learner's config resolver (its sections completed by the code's defaults), with which
    resuming completes the saved config before comparing it, as ``--check-config`` does."""

    def __init__(self, exp_dir, config: dict, train: TrainConfig, resolve=None):
        self.exp_dir = Path(exp_dir)
        self.config = config
        self.train = train
        self.resolve = resolve
        self.dist = Distributed()
        self.models: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler] = {}
        self.step = 0
        self._lock = None
        self.cpu_bf16 = self.dist.device.type == "cpu" and resolve_cpu_bf16(train.bf16_cpu)
        if self.dist.main:
            if self.dist.device.type == "cpu":
                logger.info(
                    "training on the CPU in %s (train.bf16_cpu: %s)",
                    "bf16 autocast" if self.cpu_bf16 else "float32",
                    str(train.bf16_cpu).lower(),
                )
            (self.exp_dir / "log").mkdir(parents=True, exist_ok=True)
            self._take_lock()
            self._check_same_run(config)
            save_config(config, self.exp_dir / "config.yaml")
            with open(self.exp_dir / "command.txt", "a") as f:
                f.write(command_line() + "\n")
            (self.exp_dir / "git_revision.txt").write_text(git_revision() + "\n")

    def _take_lock(self) -> None:
        """One trainer per exp dir: a second one would write the same checkpoints. The lock (flock) goes
        with the process, so a killed run never leaves it behind."""
        import fcntl

        self._lock = open(self.exp_dir / ".lock", "a+")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock.seek(0)
            holder = self._lock.read().strip() or "another process"
            self._lock.close()
            self._lock = None
            raise MetisError(
                f"{self.exp_dir} is being trained by {holder}; wait for it to finish or use another exp dir"
            ) from None
        self._lock.seek(0)
        self._lock.truncate()
        self._lock.write(f"pid {os.getpid()}\n")
        self._lock.flush()

    def release(self) -> None:
        """Gives up the exp dir's lock (at the end of ``fit``)."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def _check_same_run(self, config: dict) -> None:
        """Resuming is only for the run the exp dir holds: another config (another model size, data or
        learning rate) would load the old checkpoint into a different run, or throw it away."""
        if not any(self.checkpoint_dir.glob("step_*")):
            return
        # an unreadable config.yaml gives no differences: the checkpoints' loading decides
        diffs = trained_config_differences(
            self.exp_dir, config, ignore=RESUMABLE_KEYS, unset=(None,), resolve=self.resolve
        )
        if diffs:
            self.release()
            shown = "; ".join(diffs[:6]) + (f"; and {len(diffs) - 6} more" if len(diffs) > 6 else "")
            raise MetisError(
                f"{self.exp_dir} holds a run with another config ({shown}); to start again there pass "
                f"--overwrite, or give a new exp dir"
            )

    # --- set-up by the learner ----------------------------------------------------------------
    def seed_weights(self) -> None:
        """Seeds torch with the run's seed. Each learner calls it right before it builds its models, so one
        seed gives the same initial weights in every run and on every rank."""
        torch.manual_seed(self.train.seed)

    def add_model(self, name: str, model: nn.Module, find_unused_parameters: bool = False) -> nn.Module:
        """Moves ``model`` to the device (wrapped in DDP when there are several ranks and it trains).
        ``find_unused_parameters``: some parameters sit out some steps (S2A's heads of other codebooks)."""
        model = model.to(self.dist.device)
        if self.train.gradient_checkpointing:
            for module in model.modules():
                if hasattr(module, "gradient_checkpointing"):  # the MaskedTransformer
                    module.gradient_checkpointing = True
        if self.dist.world_size > 1 and any(p.requires_grad for p in model.parameters()):
            ids = [self.dist.local_rank] if self.dist.device.type == "cuda" else None
            model = nn.parallel.DistributedDataParallel(
                model, device_ids=ids, find_unused_parameters=find_unused_parameters
            )
        self.models[name] = model
        return model

    def add_optimizer(self, name: str, optimizer, scheduler=None) -> None:
        self.optimizers[name] = optimizer
        if scheduler is not None:
            self.schedulers[name] = scheduler

    @staticmethod
    def unwrap(model: nn.Module) -> nn.Module:
        return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model

    def autocast(self):
        if self.dist.device.type == "cuda" and self.train.bf16:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        if self.cpu_bf16:
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def optimizer_step(self, name: str, params) -> float:
        """Clips the accumulated gradients, steps optimizer ``name`` and its scheduler, zeroes the
        gradients; returns the gradient norm before clipping."""
        params = [p for p in params if p.grad is not None]
        norm = torch.nn.utils.clip_grad_norm_(params, self.train.grad_clip) if params else torch.tensor(0.0)
        self.optimizers[name].step()
        if name in self.schedulers:
            self.schedulers[name].step()
        self.optimizers[name].zero_grad(set_to_none=True)
        return float(norm)

    # --- checkpoints ---------------------------------------------------------------------------
    @property
    def checkpoint_dir(self) -> Path:
        return self.exp_dir / "checkpoints"

    def check_ranks_in_sync(self) -> None:
        """With several ranks: the weights must be identical everywhere (DDP keeps them so; a rank that
        drifted would make every later step wrong). Compares a checksum per model across ranks."""
        if self.dist.world_size == 1:
            return
        sums = torch.tensor(
            [sum(float(p.detach().double().sum()) for p in self.unwrap(m).parameters()) for m in self.models.values()],
            dtype=torch.float64,
            device=self.dist.device,
        )
        gathered = [torch.zeros_like(sums) for _ in range(self.dist.world_size)]
        torch.distributed.all_gather(gathered, sums)
        if any(not torch.equal(g, gathered[0]) for g in gathered):
            raise MetisError(
                f"step {self.step}: the ranks' weights differ (checksums {[g.tolist() for g in gathered]})"
            )
        logger.info("step %d: weights identical on all %d ranks", self.step, self.dist.world_size)

    def save_checkpoint(self) -> Path | None:
        if not self.dist.main:
            return None
        from safetensors.torch import save_file

        final = self.checkpoint_dir / f"step_{self.step:08d}"
        tmp = self.checkpoint_dir / f".step_{self.step:08d}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for name, model in self.models.items():
            state = {k: v.detach().contiguous().cpu() for k, v in self.unwrap(model).state_dict().items()}
            save_file(state, str(tmp / f"{name}.safetensors"))
        torch.save(
            {
                "step": self.step,
                "optimizers": {n: o.state_dict() for n, o in self.optimizers.items()},
                "schedulers": {n: s.state_dict() for n, s in self.schedulers.items()},
            },
            tmp / "trainer_state.pt",
        )
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        checkpoints = sorted(self.checkpoint_dir.glob("step_*"))
        for old in checkpoints[: -self.train.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def load_checkpoint(self, path: Path) -> None:
        from safetensors.torch import load_file

        for name, model in self.models.items():
            state = load_file(str(path / f"{name}.safetensors"), device=str(self.dist.device))
            self.unwrap(model).load_state_dict(state)
        trainer_state = torch.load(path / "trainer_state.pt", map_location=self.dist.device, weights_only=True)
        for name, state in trainer_state["optimizers"].items():
            self.optimizers[name].load_state_dict(state)
        for name, state in trainer_state["schedulers"].items():
            self.schedulers[name].load_state_dict(state)
        self.step = int(trainer_state["step"])

    def resume(self) -> bool:
        """Loads the newest readable checkpoint; returns whether there was one. A checkpoint that reads but
        does not fit the models (other shapes or names) is an error, not a reason to start again."""
        for path in sorted(self.checkpoint_dir.glob("step_*"), reverse=True):
            try:
                self.load_checkpoint(path)
            except RuntimeError as exc:
                mismatch = state_dict_mismatch(exc)
                if mismatch:
                    raise MetisError(
                        f"{path} does not fit this model ({mismatch[:200]}); the exp dir holds another run: "
                        f"pass --overwrite or give a new exp dir"
                    ) from None
                logger.warning(
                    "checkpoint %s is unreadable (%s: %s); trying the previous one", path, type(exc).__name__, exc
                )
                continue
            except Exception as exc:  # a truncated or corrupt file: fall back to the one before
                logger.warning(
                    "checkpoint %s is unreadable (%s: %s); trying the previous one", path, type(exc).__name__, exc
                )
                continue
            logger.info("resumed from %s (step %d)", path, self.step)
            return True
        return False

    # --- the loop ------------------------------------------------------------------------------
    def fit(self, learner) -> dict:
        """Runs ``learner.train_step(trainer, step)`` until ``max_steps`` (or ``max_minutes``)."""
        try:
            return self._fit(learner)
        finally:
            self.release()

    def _fit(self, learner) -> dict:
        from metis_cli.log import progress

        self.resume()
        started, last = time.time(), {}
        metrics_file = self.exp_dir / "metrics.jsonl"
        with progress() as bar:
            task_id = bar.add_task(f"train {self.exp_dir.name}", total=self.train.max_steps - self.step)
            while self.step < self.train.max_steps:
                torch.manual_seed(step_seed(self.train.seed, self.step, self.dist.rank))
                for model in self.models.values():
                    model.train()
                step_started = time.time()
                values = learner.train_step(self, self.step)
                self.step += 1
                bar.advance(task_id)
                values = {k: float(v) for k, v in values.items()}
                if not all(map(_finite, values.values())):
                    raise MetisError(
                        f"step {self.step}: a loss is not finite ({values}); lower the learning rate or check the data"
                    )
                last = values
                if self.dist.main and (self.step % self.train.log_every == 0 or self.step == 1):
                    record = {
                        "step": self.step,
                        **values,
                        "seconds_per_step": round(time.time() - step_started, 3),
                        "lr": self._lr(),
                        "elapsed": round(time.time() - started, 1),
                    }
                    with open(metrics_file, "a") as f:
                        f.write(json.dumps(record) + "\n")
                    logger.info("step %d %s", self.step, " ".join(f"{k}={v:.4g}" for k, v in values.items()))
                out_of_time = self.train.max_minutes is not None and time.time() - started > 60 * self.train.max_minutes
                if self.dist.world_size > 1:
                    # Every rank must agree to stop, or the others would wait forever in their next step.
                    flag = torch.tensor(float(out_of_time), device=self.dist.device)
                    torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
                    out_of_time = bool(flag.item())
                last_step = self.step == self.train.max_steps or out_of_time
                checkpoint = self.step % self.train.ckpt_every == 0 or last_step
                validation = self.step % self.train.val_every == 0 or last_step
                if checkpoint:
                    self.check_ranks_in_sync()
                    self.save_checkpoint()
                if validation and self.dist.main:
                    for model in self.models.values():
                        model.eval()
                    val = learner.validate(self, self.exp_dir / "val" / f"step_{self.step:08d}")
                    if val:
                        with open(metrics_file, "a") as f:
                            f.write(json.dumps({"step": self.step, **{f"val_{k}": v for k, v in val.items()}}) + "\n")
                        logger.info(
                            "validation at step %d: %s", self.step, " ".join(f"{k}={v:.4g}" for k, v in val.items())
                        )
                if checkpoint or validation:
                    self.dist.barrier()
                if out_of_time:
                    logger.info("stopping after %.1f min (max_minutes)", (time.time() - started) / 60)
                    break
        self.dist.close()
        return {"step": self.step, "last": last, "seconds": time.time() - started}

    def _lr(self) -> float:
        for optimizer in self.optimizers.values():
            return float(optimizer.param_groups[0]["lr"])
        return 0.0


def _finite(value: float) -> bool:
    return value == value and abs(value) != float("inf")
