"""Command-line flags, each defined once, in a module named for what it holds.

An application imports the groups it takes; importing a module defines its flags, so
that several applications can share one process. ``recipe`` groups the flags of a
training run's recipe (``data``, ``mask``, ``model``, ``optimizer``, ``runtime``) and
builds the typed :class:`tfmri.run_config.RunConfig` from them; ``common`` holds the
flags that several applications take with one meaning (``--batch_size``,
``--output_dir``, ``--checkpoint``, ...). Only ``main()`` functions read the flag
values: they pass ``FLAGS`` to the builders here.
"""
