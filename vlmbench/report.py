"""placeholder"""
from dataclasses import dataclass
@dataclass
class Verdict:
    text: str
    failed: bool = False
def finish_run(session, baseline):
    return Verdict("todo")
