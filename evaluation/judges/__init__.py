"""The judges engine: pure Python (no Django), wrapped later by the evaluation app's services.

Entry points: ``versions.JudgeVersionSpec`` (what a judge version is), ``engine.run_judge``
(score one trace's texts), ``sampling.sample_decision`` (is a trace in the sample, and with what
inclusion probability), ``secrets.KeyRing`` (provider keys at rest).
"""
