"""The sandbox: where untrusted candidate code runs.

Each candidate is written by a language model (or a random edit) and may be wrong, slow,
hungry or hostile. The host process never imports it. A pool of warm workers (interpreter
and torch already loaded, no threads started, CUDA never initialised) forks one child per
candidate, so a candidate costs milliseconds of sandbox overhead instead of a fresh start.

What it protects against:

- **runaway code**: wall-time limit (the worker kills the child's process group), CPU-time
  and address-space rlimits (memory), a 64 MiB cap on files written (huge output);
- **network access**: a new network namespace under bubblewrap; audit hooks refuse sockets;
- **file system damage**: under bubblewrap the root is read-only and only the job's scratch
  folder is writable, ``/tmp`` is private; audit hooks refuse writes outside scratch;
- **secrets**: the worker's environment is an allowlist with every name containing KEY,
  TOKEN, SECRET, PASSWORD, PASSWD, CREDENTIAL or AUTH removed; the host's home is not mounted;
- **leftover processes**: the worker is a child subreaper and kills the job's process group
  and every re-parented descendant after each job; under bubblewrap a pid namespace with
  ``--die-with-parent`` ends everything if the host goes away;
- **score faking**: validation and test labels never enter the sandbox. The child returns
  logits; the host computes accuracy. Printing fake results, patching torch or searching
  memory cannot change a score. The label sources (``mnist1d``, scikit-learn's bundled data,
  the data cache) are hidden from the sandbox;
- **killing its parent**: a child that kills its worker gets a ``crash``; the host survives
  and starts a new worker.

What it does not protect against:

- a candidate that embeds a re-implementation of a public data generator (MNIST-1D is
  procedurally generated from a fixed seed) could reconstruct labels — the static gate
  caps program size but cannot rule this out;
- numbers the child reports about itself (params, FLOPs, proxies, training time) can be
  faked by a hostile candidate, since it shares the child's interpreter; accuracy cannot;
- without bubblewrap (degraded mode, announced once): native code (e.g. through a torch
  extension) can step around audit hooks; there is no pid, network or mount namespace;
- GPU memory is not capped by rlimits; on CUDA the worker polls the child's resident
  memory instead, which a fast allocation spike can outrun;
- side channels (timing, shared GPU state) and kernel vulnerabilities.
"""

from llmnas.sandbox.isolation import clean_env, isolation_mode
from llmnas.sandbox.pool import ChildReport, SandboxError, SandboxPool

__all__ = ["ChildReport", "SandboxError", "SandboxPool", "clean_env", "isolation_mode"]
