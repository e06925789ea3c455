"""The turn-taking processor: decides when the person has finished speaking (pure core + Faust shell)."""
