;; Needs 1000 table elements at instantiation.
(module (table 1000 funcref))
