"""Gradient studies: hEP / EP estimates against the exact gradient (gradcheck), stability maps."""
