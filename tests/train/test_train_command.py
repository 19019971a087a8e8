"""``wonderland train CONFIG``: configs, training, resuming, errors, and mpiexec."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import wonderland as wl
from wonderland import cli
from wonderland.config import ConfigError, load_config, parse_config

from conftest import MPIEXEC, needs_mpi


def write(tmp_path, text, name="run.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def train(argv, capsys):
    code = cli.main(["train", *argv, "--no-progress"])
    out = capsys.readouterr()
    return code, out.out, out.err


IRIS = """
    [data]
    name = "iris"
    test_size = 0.3

    [model]
    type = "mlp"
    hidden = [16]
    activation = "tanh"

    [optimizer]
    name = "adam"
    lr = 0.03

    [train]
    epochs = EPOCHS
    batch_size = 16
    dtype = "float64"
    checkpoint_dir = "DIR"
"""


def iris(tmp_path, epochs=25, folder="run"):
    return write(tmp_path, IRIS.replace("EPOCHS", str(epochs)).replace("DIR", str(tmp_path / folder)),
                 f"{folder}.toml")


def params(path):
    return {k: v.numpy() for k, v in wl.io.load(path).items() if k.startswith("model/")}


def test_train_writes_metrics_and_a_checkpoint_and_learns(tmp_path, capsys):
    code, out, err = train([iris(tmp_path)], capsys)
    assert code == 0, err
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == list(range(1, 26))
    assert lines[-1]["val_accuracy"] >= 0.85                  # iris, 45 held-out flowers
    assert lines[-1]["train_loss"] < lines[0]["train_loss"] / 2
    assert (tmp_path / "run" / "last.safetensors").exists()
    assert "iris (105 training samples, 45 validation)" in out and "epoch 25" in out


def test_resume_reaches_the_parameters_of_an_uninterrupted_run(tmp_path, capsys):
    assert train([iris(tmp_path, 3, "a"), "--epochs", "2"], capsys)[0] == 0
    code, out, _ = train([iris(tmp_path, 3, "a"), "--resume"], capsys)
    assert code == 0 and "resuming from" in out
    assert train([iris(tmp_path, 3, "b")], capsys)[0] == 0
    a, b = params(tmp_path / "a" / "last.safetensors"), params(tmp_path / "b" / "last.safetensors")
    assert a.keys() == b.keys()
    # the same steps on the same batches from a checkpoint that keeps every bit: identical
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    epochs = [json.loads(x)["epoch"] for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3]


def test_jit_in_the_config_trains_to_the_same_parameters(tmp_path, capsys):
    assert train([iris(tmp_path, 3, "plain")], capsys)[0] == 0
    text = IRIS.replace("EPOCHS", "3").replace("DIR", str(tmp_path / "jit")) + "    jit = true\n"
    code, _, err = train([write(tmp_path, text, "jit.toml")], capsys)
    assert code == 0, err
    a, b = params(tmp_path / "plain" / "last.safetensors"), params(tmp_path / "jit" / "last.safetensors")
    assert a.keys() == b.keys()
    # 21 Adam steps; the update lr·m/(√v + 1e-8) passes the paths' ~1e-15 relative differences
    # through (no BatchNorm: no gradient is zero up to rounding, see test_gpu_backend): ~1e-14
    for k in a:
        np.testing.assert_allclose(b[k], a[k], rtol=1e-10, atol=1e-12)


def test_training_on_the_stand_in_device_matches_the_cpu(tmp_path, capsys):
    from wonderland.backend.fake_device import fake_cuda

    assert train([iris(tmp_path, 3, "cpu")], capsys)[0] == 0
    with fake_cuda():
        code, out, err = train([iris(tmp_path, 3, "dev"), "--device", "cuda"], capsys)
    assert code == 0, err
    assert "cuda" in out
    # as in the jit test above: 21 Adam steps, no gradient zero up to rounding: ~1e-14
    a, b = params(tmp_path / "cpu" / "last.safetensors"), params(tmp_path / "dev" / "last.safetensors")
    for k in a:
        np.testing.assert_allclose(b[k], a[k], rtol=1e-10, atol=1e-12)
    rows = [(tmp_path / d / "metrics.jsonl").read_text().splitlines() for d in ("cpu", "dev")]
    assert [json.loads(x)["val_accuracy"] for x in rows[0]] == \
        [json.loads(x)["val_accuracy"] for x in rows[1]]


def test_asking_for_a_missing_gpu_is_a_config_error(tmp_path, capsys):
    from wonderland.backend.cupy_backend import unavailable_reason

    if unavailable_reason() is None:
        pytest.skip("a GPU is present")
    code, _, err = train([iris(tmp_path, 1), "--device", "cuda"], capsys)
    assert code == 2 and "[train] device: 'cuda' is not available here" in err


def test_an_existing_checkpoint_needs_resume_or_restart(tmp_path, capsys):
    config = iris(tmp_path, 1)
    assert train([config], capsys)[0] == 0
    code, _, err = train([config], capsys)
    assert code == 2 and "pass --resume to continue from it or --restart" in err
    assert train([config, "--restart"], capsys)[0] == 0
    code, _, err = train([config, "--resume", "--restart"], capsys)
    assert code == 2 and "exclude each other" in err


def test_resume_without_a_checkpoint_is_refused_and_keeps_the_log(tmp_path, capsys):
    config = iris(tmp_path, 1)
    log = tmp_path / "run" / "metrics.jsonl"
    code, _, err = train([config, "--resume"], capsys)
    assert code == 2 and "--resume: there is no checkpoint to resume from" in err
    assert str(tmp_path / "run" / "last.safetensors") in err and not log.exists()
    assert train([config], capsys)[0] == 0
    history = log.read_text()
    os.remove(tmp_path / "run" / "last.safetensors")
    code, out, err = train([config, "--resume"], capsys)
    assert code == 2 and "--resume: there is no checkpoint to resume from" in err
    assert "starting from epoch 1" not in out and log.read_text() == history


def test_an_earlier_runs_log_is_never_truncated(tmp_path, capsys):
    config = iris(tmp_path, 1)
    log = tmp_path / "run" / "metrics.jsonl"
    assert train([config], capsys)[0] == 0
    history = log.read_text()
    os.remove(tmp_path / "run" / "last.safetensors")          # the log outlives the checkpoint
    code, _, err = train([config], capsys)
    assert code == 2
    assert f"[train] log_file: {log} already holds the metrics of an earlier run" in err
    assert log.read_text() == history
    code, out, err = train([config, "--restart"], capsys)       # starting over keeps it aside
    assert code == 0, err
    kept = tmp_path / "run" / "metrics.1.jsonl"
    assert kept.read_text() == history and f"the earlier metrics log is kept as {kept}" in out
    assert [json.loads(x)["epoch"] for x in log.read_text().splitlines()] == [1]
    assert train([config, "--restart"], capsys)[0] == 0
    assert (tmp_path / "run" / "metrics.2.jsonl").exists() and kept.read_text() == history


def test_a_data_set_of_one_sample_is_refused(tmp_path, capsys):
    np.savez(tmp_path / "one.npz", x=np.zeros((1, 4)), y=np.zeros(1, np.int64))
    config = write(tmp_path, f"""
        [data]
        name = "npz"
        path = "{tmp_path / 'one.npz'}"
        x = "x"
        y = "y"
        [train]
        checkpoint_dir = "{tmp_path / 'out'}"
    """)
    code, _, err = train([config], capsys)
    assert code == 2 and "[data] npz: need at least 2 samples, got 1" in err


def test_npz_and_csv_files_and_a_model_class(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4))
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    np.savez(tmp_path / "d.npz", inputs=x, labels=y)
    rows = ["a,b,c,d,label"] + [",".join(f"{v:.5f}" for v in r) + f",{c}" for r, c in zip(x, y)]
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    npz = write(tmp_path, f"""
        [data]
        name = "npz"
        path = "{tmp_path / 'd.npz'}"
        x = "inputs"
        y = "labels"
        [model]
        type = "SoftmaxRegression"
        options = {{ in_features = 4, num_classes = 2 }}
        [optimizer]
        name = "sgd"
        lr = 0.5
        momentum = 0.9
        [train]
        epochs = 15
        batch_size = 12
        checkpoint_dir = "{tmp_path / 'npz'}"
    """, "npz.toml")
    assert train([npz], capsys)[0] == 0
    last = json.loads((tmp_path / "npz" / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["val_accuracy"] >= 0.8                        # a linearly separable rule
    csv = write(tmp_path, f"""
        [data]
        name = "csv"
        path = "{tmp_path / 'd.csv'}"
        target = "label"
        [train]
        epochs = 2
        checkpoint_dir = "{tmp_path / 'csv'}"
    """, "csv.toml")
    assert train([csv], capsys)[0] == 0


@pytest.mark.parametrize("text, message", [
    ("[data]\nname = 'mnist'", "[data] name: expected one of digits"),
    ("[data]\nname = 'iris'\n[modle]\ntype = 'mlp'", "unknown table(s) ['modle']"),
    ("[data]\nname = 'iris'\nsize = 3", "[data] size: unknown key; known keys: name, path"),
    ("[data]\nname = 'iris'\n[train]\nepochs = 'ten'", "[train] epochs: expected a positive int, got 'ten'"),
    ("[data]\nname = 'iris'\n[train]\nepochs = 0", "[train] epochs: expected a positive int, got 0"),
    ("[data]\nname = 'iris'\n[train]\nepochs = true", "[train] epochs: expected a positive int, got True"),
    ("[model]\ntype = 'mlp'", "[data] name is required"),
    ("[data]\nname = 'npz'", "[data] path: a npz data set needs path"),
    ("[data]\nname = 'iris'\n[optimizer]\nname = 'lbfgs'", "[optimizer] name: expected one of sgd"),
    ("[data]\nname = 'iris'\n[schedule]\nT_max = 3", "[schedule] name: the schedule has settings but no name"),
    ("[data]\nname = 'iris'\n[model]\ndropout = 1.5", "[model] dropout: expected a probability"),
    ("[data]\nname = 'iris'\n[train]\nmetrics = ['f1']", "[train] metrics: unknown metric(s) ['f1']"),
    ("[data]\nname = 'iris'\n[model]\ntype = 'cnn'", "[data] image_shape: a cnn needs"),
])
def test_bad_configs_are_errors_that_say_what_is_wrong(tmp_path, text, message):
    path = write(tmp_path, text + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert message in str(info.value) and path in str(info.value)


@pytest.mark.parametrize("text, message", [
    ("[data]\nname = 'iris'\n[optimizer]\nname = 'adam'\nmomentum = 0.9",
     "[optimizer] momentum: not a setting of Adam; its settings are lr, betas"),
    ("[data]\nname = 'digits'\nimage_shape = [8, 9, 1]",
     "[data] image_shape: [8, 9, 1] holds 72 values, but each sample has 64"),
    ("[data]\nname = 'iris'\n[model]\ntype = 'Transformer9'", "[model] type: expected 'mlp', 'cnn' or one of"),
    ("[data]\nname = 'iris'\n[model]\ntype = 'ResNet'\noptions = { depth = 3 }", "[model] options: ResNet(depth=3) failed"),
    ("[data]\nname = 'diabetes'\n[train]\nloss = 'cross_entropy'", "cross_entropy needs integer class labels"),
    ("[data]\nname = 'npz'\npath = 'missing.npz'", "[data] path: read_npz: no such file"),
])
def test_configs_that_fail_when_built_exit_with_status_2(tmp_path, capsys, text, message):
    path = write(tmp_path, text + f"\n[train]\ncheckpoint_dir = '{tmp_path / 'out'}'\n"
                 if "[train]" not in text else text.replace(
                     "[train]", f"[train]\ncheckpoint_dir = '{tmp_path / 'out'}'") + "\n")
    code, _, err = train([path], capsys)
    assert code == 2 and message in err, err


def test_yaml_and_broken_files_are_refused(tmp_path, capsys):
    code, _, err = train([write(tmp_path, "data: {name: iris}\n", "c.yaml")], capsys)
    assert code == 2 and "YAML configs are not supported" in err and "TOML" in err
    code, _, err = train([write(tmp_path, "[data\nname = 1\n", "bad.toml")], capsys)
    assert code == 2 and "not valid TOML" in err
    code, _, err = train([str(tmp_path / "none.toml")], capsys)
    assert code == 2 and "no such config file" in err


def test_help_describes_the_command(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["train", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert "TOML" in text and "--resume" in text and "mpiexec" in text and "exit status" in text


def test_parse_config_fills_defaults():
    cfg = parse_config({"data": {"name": "moons"}, "optimizer": {"momentum": 0.5}})
    assert cfg["model"]["type"] == "mlp" and cfg["train"]["epochs"] == 10
    assert cfg["optimizer"]["options"] == {"momentum": 0.5} and cfg["schedule"]["name"] == ""


MOONS = """
    [data]
    name = "moons"
    n = 400
    test_size = 0.25
    noise = 0.2
    [model]
    hidden = [16, 16]
    [optimizer]
    name = "sgd"
    lr = 0.1
    momentum = 0.9
    [schedule]
    name = "step"
    step_size = 2
    gamma = 0.5
    [train]
    epochs = 3
    batch_size = 20
    dtype = "float64"
    checkpoint_dir = "DIR"
"""


@needs_mpi
def test_the_same_command_under_mpiexec_matches_one_process(tmp_path, capsys):
    one = write(tmp_path, MOONS.replace("DIR", str(tmp_path / "one")), "one.toml")
    two = write(tmp_path, MOONS.replace("DIR", str(tmp_path / "two")), "two.toml")
    assert train([one], capsys)[0] == 0
    env = dict(os.environ, WONDERLAND_DIST_TIMEOUT="60", WONDERLAND_NUM_THREADS="1")
    run = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "-m", "wonderland", "train", two,
                          "--no-progress"], capture_output=True, text=True, timeout=180, env=env)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert run.stdout.count("wonderland train: epoch 3") == 1          # rank 0 prints
    a, b = params(tmp_path / "one" / "last.safetensors"), params(tmp_path / "two" / "last.safetensors")
    for k in a:
        # 45 SGD steps of lr ≤ 0.1 on gradients all-reduced in another order (~2e-15 each),
        # momentum 0.9 multiplying them by ≤ 10: ≲ 1e-13
        np.testing.assert_allclose(b[k], a[k], rtol=0, atol=1e-12)
    assert len((tmp_path / "two" / "metrics.jsonl").read_text().splitlines()) == 3


@needs_mpi
def test_a_global_batch_that_does_not_split_over_the_ranks_is_refused(tmp_path):
    config = write(tmp_path, MOONS.replace("DIR", str(tmp_path / "x")).replace(
        "batch_size = 20", "batch_size = 21"))
    env = dict(os.environ, WONDERLAND_DIST_TIMEOUT="30", WONDERLAND_NUM_THREADS="1")
    run = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "-m", "wonderland", "train", config,
                          "--no-progress"], capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode != 0
    assert "batch_size: 21 is the global batch and must split evenly over the 2 ranks" in run.stderr
