"""What the curriculum's lessons need beyond training one run (dlplay issue 11).

- ``guide.py``: a lesson preset's guided steps as documents (the runs a step compares side by side).
- ``optim_race.py``: the optimizer race on 2D test functions (lesson 9), step by step with torch.optim.
- ``search.py``: random vs grid hyperparameter search, coarse then fine (lesson 21).

The lesson block itself (``Experiment.lesson``: steps, the changes their buttons make) is part of
the document, in ``server/schemas.py``; FGSM (lesson 20) is a probe, ``server/probes/adversarial.py``.
Import the modules themselves; this package imports nothing so that importing one stays cheap.
"""
