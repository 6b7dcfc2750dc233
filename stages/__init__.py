"""What each WikiGraph stage does. Stages never import `jobs` (the launcher layer)."""
