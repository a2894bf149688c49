"""Real-time risk: pre-trade checks in front of every venue, trading states, the live portfolio.

One module per concern, configuration apart from the components it configures (as
nautilus_trader's ``risk`` package):

* :mod:`~spark_research.risk.config` -- ``risk.yml`` limits, validated at load (:class:`RiskConfig`);
* :mod:`~spark_research.risk.engine` -- :class:`RiskEngine`: the pre-trade checks, ACTIVE /
  REDUCING / HALTED per strategy, instrument and globally, loss and drawdown breakers, audit;
* :mod:`~spark_research.risk.portfolio` -- :class:`Portfolio`: positions, PnL, exposure, equity,
  drawdown, historical and Cornish-Fisher VaR / expected shortfall;
* :mod:`~spark_research.risk.venue` -- :class:`RiskGuardedVenue`: a venue reachable only through the engine;
* :mod:`~spark_research.risk.store` -- the state and the day's counters, durable across ``kill -9``;
* :mod:`~spark_research.risk.backtest` -- the engine applied to ``run_backtest``'s signals.

Nothing is imported here eagerly: import the module you need.
"""
