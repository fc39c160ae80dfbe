"""The pure domain: rules, scores and models of matching. Imports no infrastructure."""
