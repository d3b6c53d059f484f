"""`portdoctor fix`: turn a diagnosis into structured actions, apply them after consent, prove the
connection works, and roll everything back when it does not.

actions.py   the action of each fix (pure: snapshot and diagnosis context in, actions out)
plan.py      a plan from a diagnosis: the automatic steps, what is refused and why
configedit.py  one setting of a config file changed, comments and layout kept; unified diffs
apply.py     applying a plan step by step, verifying, rolling back; `fix --undo`
restart.py   restarting a server started by hand, the way it was started
journal.py   what was changed, when, and the backups (/var/lib/portdoctor/fixes)
"""
