"""Helpers of the training tests: a batch source that dies mid-run, as a killed run does."""


class Interrupt(Exception): pass

class StopAfter:
    "Wraps a batch source and raises after `n` batches (a run killed mid-way)."
    def __init__(self, src, n): self.src, self.n = src, n
    def __iter__(self): return self
    def __next__(self):
        if self.n == 0: raise Interrupt
        self.n -= 1; return next(self.src)
    def state_dict(self): return self.src.state_dict()
    def load_state_dict(self, d): self.src.load_state_dict(d)


def checkpoint_of_other_settings(run_dir):
    """A trainer's checkpoint of other settings in `run_dir`: a run there resumes from it and stops inside its notebook
    with a ParameterError (bad input found once the run started; a bad `init` file is refused before anything runs)."""
    from pathlib import Path
    import torch
    from classmix_lab.data import TensorBatches
    from classmix_lab.model import get_model
    from classmix_lab.train import Trainer, TrainConfig
    run_dir = Path(run_dir); run_dir.mkdir(parents=True, exist_ok=True)
    x, y = torch.zeros(2, 3, 8, 8, dtype=torch.uint8), torch.zeros(2, 8, 8, dtype=torch.uint8)
    Trainer(get_model('deeplabv2-tiny', 2, width=8), TensorBatches(x, y, 2, seed=0), config=TrainConfig(iterations=1, lr=0.5),
            checkpoint=run_dir/'checkpoint.pt', progress=None).fit()
