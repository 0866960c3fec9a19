"""``offeropt simulate``: a closed-loop quarter on a synthetic world with known truth
(:mod:`.world`), the strategies it compares (:mod:`.strategies`), the weekly loop (:mod:`.loop`)
and the results over seeds (:mod:`.report`)."""
