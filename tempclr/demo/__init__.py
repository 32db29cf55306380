"""The embedded demo: one seeded synthetic world (tasks, steps, videos, captions) and the writers that turn it
into the HowTo100M and CrossTask formats and a tiny BERT.  Used by ``scripts/make_demo_data.py`` and the tests;
nothing in training or evaluation imports it."""
