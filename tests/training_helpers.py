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
