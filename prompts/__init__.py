"""The prompt templates shipped with llmnas, installed as the package ``llmnas.prompts``.

Edit these files to change what every run's model sees, or copy them to a folder of your own
and point a run at it with ``--prompts DIR`` (``[llm] prompts``): a template found there wins.
The format and the fields of each template are described in :mod:`llmnas.prompting`.
"""
