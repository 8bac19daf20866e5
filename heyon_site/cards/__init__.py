"""Cards: numbers (normalised, digested, masked), creating and finding cards, opening one with
its password through the guessing throttle, and `flask cards`."""
