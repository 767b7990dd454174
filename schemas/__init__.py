"""The Avro contract, ``<name>.v<N>.avsc``: a package only so that the files ship inside the wheel.

``notify_core.codec`` finds them with ``importlib.resources.files("schemas")``, whether installed from
a wheel or editable from the repository, where this folder is the one copy.
"""
