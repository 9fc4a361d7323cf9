/* The fine-tune page: loss and learning-rate curves drawn from the metrics API, polled while the job runs.
 *
 *   <div id="loss-chart" data-finetune-metrics="/api/v1/finetunes/7/metrics?project=acme" data-lr-chart="lr-chart">
 *
 * Points are kept by step, so re-reading the last step (the API's next_after does) replaces rather than
 * repeats; a new attempt (a job resumed after its worker died) starts the curves over.
 */
(function () {
  "use strict";
  var POLL_MS = 2000;
  var FINISHED = { succeeded: true, failed: true, cancelled: true };

  function sorted(byStep) {
    return Object.keys(byStep).map(Number).sort(function (a, b) { return a - b; }).map(function (step) {
      return [step, byStep[step]];
    });
  }

  function follow(lossEl) {
    var url = lossEl.getAttribute("data-finetune-metrics");
    var lrEl = document.getElementById(lossEl.getAttribute("data-lr-chart"));
    var state = { after: -1, attempt: null, train: {}, evals: {}, lr: {} };

    function reset(attempt) {
      state = { after: -1, attempt: attempt, train: {}, evals: {}, lr: {} };
    }

    function draw() {
      window.LogtuneCharts.lines(lossEl, [
        { name: "train loss", points: sorted(state.train) },
        { name: "eval loss", points: sorted(state.evals) },
      ], { label: "Loss by step", xLabel: "step", empty: "No step reported yet" });
      if (lrEl) {
        window.LogtuneCharts.lines(lrEl, [{ name: "learning rate", points: sorted(state.lr) }],
          { label: "Learning rate by step", xLabel: "step", empty: "No step reported yet" });
      }
    }

    function poll() {
      var sep = url.indexOf("?") < 0 ? "?" : "&";
      fetch(url + sep + "after=" + state.after, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) { return response.ok ? response.json() : Promise.reject(response.status); })
        .then(function (body) {
          if (state.attempt !== null && body.attempt !== state.attempt) {
            reset(body.attempt);
            return poll();
          }
          state.attempt = body.attempt;
          body.points.forEach(function (p) {
            if (p.train_loss !== null) state.train[p.step] = p.train_loss;
            if (p.eval_loss !== null) state.evals[p.step] = p.eval_loss;
            if (p.learning_rate !== null) state.lr[p.step] = p.learning_rate;
          });
          state.after = body.next_after;
          draw();
          lossEl.setAttribute("data-points", String(Object.keys(state.train).length + Object.keys(state.evals).length));
          if (FINISHED[body.status]) lossEl.setAttribute("data-finished", "1");
          else setTimeout(poll, POLL_MS);
        })
        .catch(function () { setTimeout(poll, POLL_MS * 3); });
    }

    poll();
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-finetune-metrics]").forEach(follow);
  });
})();
