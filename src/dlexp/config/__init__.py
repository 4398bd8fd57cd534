"""The config language: schemas of the fixed groups, validation, the strict registry and key limits.

- ``files``: where conf/ is, each group's options, train.yaml's defaults;
- ``schema``: the trainer/regularizer/decode dataclasses and the top-level keys;
- ``registry``: name -> builder registries, whose signatures are the open groups' schemas;
- ``constraints``: limits declared in type hints, and their check;
- ``validate``: a composed config checked against all of the above.

The bottom layer: it imports only ``dlexp.errors`` (never torch), so every layer may use it.
"""
