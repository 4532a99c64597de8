"""CPU training throughput (images/s) of LSNet-T: Keras (this repo) vs the PyTorch reference.

One training step = forward in training mode, cross-entropy on label-smoothed targets, backward
and an AdamW update, on the same batch of random 224x224 images, same batch size, same thread
count. Contenders:

* keras: `lsnet_keras.LSNet` + `keras.optimizers.AdamW`, one `tf.function` step (graph mode);
* torch-eager: the reference `tests/torch_lsnet.py` in train mode, `torch.optim.AdamW`: the
  same work as `keras` (the headline ratio);
* keras-trainer: the step `python -m training.train` runs (`Trainer.train_step`: the
  distribution strategy's step, AdamW with adaptive gradient clipping 0.02, the EMA of all
  weights), fed from a constant batch;
* torch-recipe: torch-eager plus timm's `adaptive_clip_grad` 0.02 and `ModelEma` 0.99996, the
  official step's work (the trainer's ratio);
* keras-xla (`--xla`): the keras step compiled with XLA (`jit_compile=True`); on CPU it is
  several times slower than the oneDNN kernels TensorFlow uses without it, so the trainer
  does not use XLA.

Each contender lives in its own worker process (TensorFlow's and PyTorch's thread pools in one
process slow each other down several-fold), all started by one run. After the warm-up, rounds
alternate between the workers, one at a time, so machine load hits them alike; the table shows
the median step time over the rounds. Compare ratios within one run, and mind the recorded load
average: PyTorch's OpenMP threads slow down far more than TensorFlow's thread pool when other
processes share the cores, so on a busy machine use `--threads 1` for a fair comparison.

Usage:
    python benchmarks/train_throughput.py                    # batch 32, 5 rounds of 2 steps
    python benchmarks/train_throughput.py --batch-size 64 --rounds 8 --threads 1 --xla

Writes `benchmarks/results/train_throughput.json` (or --json) and prints a markdown table.
Target: keras >= torch-eager (and keras-trainer >= torch-recipe).
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_JSON = REPO / "benchmarks" / "results" / "train_throughput.json"
NUM_CLASSES = 1000
DESCRIPTIONS = {
    "keras": "tf.function step, keras.optimizers.AdamW",
    "torch-eager": "tests/torch_lsnet.py, train mode, torch.optim.AdamW",
    "keras-trainer": "Trainer.train_step: + AGC 0.02 and EMA of all weights",
    "torch-recipe": "torch-eager + timm adaptive_clip_grad 0.02 and ModelEma 0.99996",
    "keras-xla": "the keras step with jit_compile=True",
}
PAIRS = {"keras": "torch-eager", "keras-trainer": "torch-recipe"}


def batch(batch_size, size, seed=0):
    """The same random NHWC images and label-smoothed one-hot targets for every contender."""
    import numpy as np

    rng = np.random.default_rng(seed)
    images = rng.standard_normal((batch_size, size, size, 3)).astype("float32")
    labels = rng.integers(0, NUM_CLASSES, batch_size)
    targets = np.full((batch_size, NUM_CLASSES), 0.1 / NUM_CLASSES, "float32")
    targets[np.arange(batch_size), labels] += 0.9
    return images, targets


def keras_step(name, images, targets, threads):
    """One compiled Keras training step on the batch; returns a callable."""
    import keras
    import tensorflow as tf

    from lsnet_keras.model.lsnet import lsnet_t
    from lsnet_keras.training.recipe import soft_cross_entropy

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    if name == "keras-trainer":
        return trainer_step(images, targets)
    model = lsnet_t(input_shape=images.shape[1])
    optimizer = keras.optimizers.AdamW(1e-3, weight_decay=0.025, epsilon=1e-8)

    @tf.function(jit_compile=name == "keras-xla")
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(soft_cross_entropy(y, model(x, training=True)))
        variables = model.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    x, y = tf.constant(images), tf.constant(targets)
    return lambda: float(step(x, y))


def trainer_step(images, targets):
    """`Trainer.train_step` of an LSNet-T run (official recipe) on the constant batch."""
    import tempfile

    import numpy as np
    import tensorflow as tf
    from PIL import Image

    from lsnet_keras.training.config import TrainConfig
    from lsnet_keras.training.trainer import Trainer

    folder = tempfile.mkdtemp(prefix="train_throughput_")
    os.makedirs(os.path.join(folder, "data", "train", "class_0"))
    for i in range(len(images)):  # the trainer needs a dataset; the step ignores it
        pixels = np.zeros((8, 8, 3), "uint8")
        Image.fromarray(pixels).save(os.path.join(folder, "data", "train", "class_0", f"{i}.png"))
    config = TrainConfig(
        os.path.join(folder, "data"),
        os.path.join(folder, "run"),
        num_classes=NUM_CLASSES,
        batch_size=len(images),
        img_size=images.shape[1],
        verbose=False,
    )
    trainer = Trainer(config)
    batches = tf.data.Dataset.from_tensors((images, targets)).repeat()
    iterator = iter(trainer.strategy.experimental_distribute_dataset(batches))
    return lambda: float(trainer.train_step(iterator))


def torch_step(images, targets, threads, recipe=False):
    """One eager PyTorch training step of the reference model; returns a callable.

    `recipe`: add timm's adaptive gradient clipping (0.02) and ModelEma (0.99996), as the
    official `main.py` does.
    """
    import copy

    import torch

    sys.path.insert(0, str(REPO / "tests"))
    import torch_lsnet

    torch.set_num_threads(threads)
    model = torch_lsnet.build_variant("lsnet_t", img_size=images.shape[1]).train()
    optimizer = torch.optim.AdamW(model.parameters(), 1e-3, weight_decay=0.025)
    ema = copy.deepcopy(model).eval() if recipe else None
    x = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
    y = torch.from_numpy(targets)

    def unit_norm(t):  # timm.utils.agc.unitwise_norm
        if t.ndim <= 1:
            return t.norm(2.0)
        return t.norm(2.0, dim=tuple(range(1, t.ndim)), keepdim=True)

    @torch.no_grad()
    def clip():  # timm.utils.agc.adaptive_clip_grad
        for p in model.parameters():
            max_norm = unit_norm(p).clamp_(min=1e-3).mul_(0.02)
            grad_norm = unit_norm(p.grad)
            clipped = p.grad * (max_norm / grad_norm.clamp(min=1e-6))
            p.grad.copy_(torch.where(grad_norm < max_norm, p.grad, clipped))

    @torch.no_grad()
    def average():  # timm.utils.model_ema.ModelEma.update
        for e, m in zip(ema.state_dict().values(), model.state_dict().values()):
            if e.dtype.is_floating_point:
                e.copy_(e * 0.99996 + (1.0 - 0.99996) * m)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = -(y * torch.log_softmax(model(x), dim=-1)).sum(-1).mean()
        loss.backward()
        if recipe:
            clip()
        optimizer.step()
        if recipe:
            average()
        return float(loss.detach())

    return step


def worker(name, batch_size, size, threads, warmup):
    """Build one contender, warm it up, then time `n` steps per line read from stdin."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    images, targets = batch(batch_size, size)
    if name.startswith("torch"):
        step = torch_step(images, targets, threads, recipe=name == "torch-recipe")
    else:
        step = keras_step(name, images, targets, threads)
    began = time.perf_counter()
    for _ in range(warmup):
        step()
    print(f"ready {time.perf_counter() - began:.2f}", flush=True)
    for line in sys.stdin:
        began = time.perf_counter()
        for _ in range(int(line)):
            step()
        print(f"{(time.perf_counter() - began) / int(line):.6f}", flush=True)


def start(name, args):
    command = [sys.executable, __file__, "--worker", name, "--batch-size", str(args.batch_size)]
    command += ["--img-size", str(args.img_size), "--threads", str(args.threads)]
    command += ["--warmup", str(args.warmup)]
    environment = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=environment
    )


def measure(args, names):
    """{name: [seconds per step of each round]}; workers run one at a time."""
    workers = {}
    try:
        for name in names:  # warm up one by one: tracing is heavy
            workers[name] = start(name, args)
            ready = workers[name].stdout.readline().split()
            if not ready or ready[0] != "ready":
                raise RuntimeError(f"{name}: the worker failed to start")
            print(f"  {name}: warm-up (and tracing) {float(ready[1]):.1f} s", flush=True)
        times = {name: [] for name in names}
        for index in range(args.rounds):
            order = names[index % len(names) :] + names[: index % len(names)]
            for name in order:
                time.sleep(0.5)  # let the previous worker's threads go idle
                workers[name].stdin.write(f"{args.steps}\n")
                workers[name].stdin.flush()
                times[name].append(float(workers[name].stdout.readline()))
            print(f"  round {index + 1}/{args.rounds} done", flush=True)
        return times
    finally:
        for process in workers.values():
            process.stdin.close()
            process.wait(timeout=60)


def report(args, times):
    median = {name: statistics.median(values) for name, values in times.items()}
    rate = {name: args.batch_size / seconds for name, seconds in median.items()}
    rows = []
    print("\n| contender | s/step | images/s | vs torch | what |")
    print("|---|---|---|---|---|")
    for name, seconds in median.items():
        versus = PAIRS.get(name, "torch-eager" if name.startswith("keras") else name)
        row = {"contender": name, "seconds_per_step": seconds, "images_per_second": rate[name]}
        row.update(versus=versus, ratio=rate[name] / rate[versus])
        rows.append({**row, "description": DESCRIPTIONS[name], "round_seconds": times[name]})
        ratio = f"{row['ratio']:.2f}x {versus}"
        print(f"| {name} | {seconds:.3f} | {rate[name]:.1f} | {ratio} | {DESCRIPTIONS[name]} |")
    import keras
    import tensorflow as tf
    import torch

    ratios = {f"{k}_vs_{v}".replace("-", "_"): rate[k] / rate[v] for k, v in PAIRS.items()}
    return {
        "model": "lsnet_t",
        "img_size": args.img_size,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "rounds": args.rounds,
        "steps_per_round": args.steps,
        "machine": platform.processor() or platform.machine(),
        "cpus": len(os.sched_getaffinity(0)),
        "load_average_1min": {"start": args.load_at_start, "end": os.getloadavg()[0]},
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "torch": torch.__version__,
        "results": rows,
        **ratios,
        "target_met": all(value >= 1.0 for value in ratios.values()),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=2, help="steps per contender per round")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--xla", action="store_true", help="add the XLA-compiled Keras step")
    parser.add_argument("--json", default=str(DEFAULT_JSON))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.worker, args.batch_size, args.img_size, args.threads, args.warmup)
    names = ["keras", "torch-eager", "keras-trainer", "torch-recipe"] + ["keras-xla"] * args.xla
    args.load_at_start = os.getloadavg()[0]  # other work on the machine skews the ratios
    print(f"LSNet-T {args.img_size}px, batch {args.batch_size}, {args.threads} threads")
    result = report(args, measure(args, names))
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(result, f, indent=1)
    ratios = ", ".join(f"{k} {v:.2f}x" for k, v in result.items() if "_vs_" in k)
    verdict = "met" if result["target_met"] else "NOT met"
    print(f"\ntarget (Keras >= PyTorch eager): {verdict}; {ratios}; {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
