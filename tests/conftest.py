import pytest

from autoprune.training import finetune
from autoprune.latency.cache import table_for_this_machine
from autoprune.models.specs import load_model
from autoprune.pruning.space import build_space


@pytest.fixture(scope="session", autouse=True)
def fresh_table_cache(tmp_path_factory):
    """Every session starts on a machine with no table of its own yet (subprocesses inherit it): the default
    flow profiles this machine's table once, as on a user's first run, and never touches the user's cache."""
    with pytest.MonkeyPatch.context() as mp:
        folder = tmp_path_factory.mktemp("table-cache")
        mp.setenv("AUTOPRUNE_CACHE", str(folder))
        yield folder


@pytest.fixture(scope="session")
def resnet56():
    """The embedded default: CIFAR ResNet-56 with its shipped pretrained weights."""
    return load_model("cifar:resnet56", weights="shipped")


@pytest.fixture(scope="session")
def resnet56_space(resnet56):
    return build_space(resnet56)


@pytest.fixture(scope="session")
def machine_table(resnet56, resnet56_space):
    """This machine's table of the default, profiled once per session as a user's first command does: a test of
    what a later command prints (one line for an error) must not depend on running after one that profiled it."""
    return table_for_this_machine(resnet56, resnet56_space)


@pytest.fixture
def killed_at_step():
    """Runs `train(*args, **kwargs)` and kills it (KeyboardInterrupt, as ^C or a lost machine) when it reaches
    training step `step`: what a checkpointed fine-tune must resume from."""
    def run(step, train, *args, **kwargs):
        train_step = finetune.train_step

        def step_or_die(model, data, optimiser, scheduler, at, *rest):
            if at == step:
                raise KeyboardInterrupt
            return train_step(model, data, optimiser, scheduler, at, *rest)

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(finetune, "train_step", step_or_die)
            with pytest.raises(KeyboardInterrupt):
                train(*args, **kwargs)
    return run
