"""Objectives as plain maths on arrays: diffusion schedules and samplers, flow matching, adversarial losses."""
