"""Backgrounds and the blend that puts the person in front of one."""
