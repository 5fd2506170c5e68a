"""The ``agent`` node: a model answering through the OpenAI Chat Completions API with tools.

config.py        the node's config, checked
prompt.py        the messages: a stable system prefix, then the run's varying part
tools.py         the tools offered to the model, their arguments checked
patching.py      patch_workflow: submit the patch, answer with the coordinator's verdict
verdicts.py      waiting for that verdict in the run's partition of the runs topic
model_errors.py  which model errors are worth another try, and when (Retry-After)
calls.py         the one retry layer around each model call
handler.py       the turn loop, the ModelCalled events and the node's output
"""
