//! kmb simulator (VOPR) and checkers.
