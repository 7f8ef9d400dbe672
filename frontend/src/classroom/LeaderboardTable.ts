/**
 * The leaderboard as a table: rank, name, best validation accuracy, parameters and, in a
 * challenge, whether the network is within the parameter budget. Rows come ranked (the
 * server's GET /api/class/leaderboard, or rankStudents() over the live summaries); `me`
 * highlights the student's own row on the student's page.
 */

import { h } from "../dom";
import type { Challenge } from "./classApi";
import { percent, type RankedRow } from "./model";

export class LeaderboardTable {
  readonly el: HTMLElement;
  private body = h("tbody");
  private caption = h("caption.lb-caption");
  private budgetHead = h("th", { scope: "col" }, "Budget");

  constructor(private readonly me: string | null = null) {
    this.el = h("table.leaderboard",
      null,
      this.caption,
      h("thead", null, h("tr", null,
        h("th.num", { scope: "col" }, "#"),
        h("th", { scope: "col" }, "Name"),
        h("th.num", { scope: "col" }, "Best val acc"),
        h("th.num", { scope: "col" }, "Params"),
        this.budgetHead)),
      this.body);
  }

  set(rows: readonly RankedRow[], challenge: Challenge | null): void {
    this.caption.textContent = challenge
      ? `Challenge: best validation accuracy with at most ${challenge.param_budget.toLocaleString("en-US")} parameters`
      : "Best validation accuracy";
    this.budgetHead.hidden = !challenge;
    if (!rows.length) {
      this.body.replaceChildren(h("tr.lb-empty", null, h("td", { colspan: 5 }, "No student has trained yet.")));
      return;
    }
    this.body.replaceChildren(
      ...rows.map((r) => {
        const budget = h("td.lb-budget", { hidden: !challenge },
          r.withinBudget === false ? h("span.over", null, "over budget") : r.withinBudget ? h("span.within", null, "within") : "–");
        return h(`tr${r.memberId === this.me ? ".mine" : ""}${r.withinBudget === false ? ".over-budget" : ""}`,
          { "data-member": r.memberId, "data-rank": r.rank },
          h("td.num.lb-rank", null, r.rank),
          h("td.lb-name", null, r.name),
          h("td.num.lb-best", null, percent(r.bestValAcc)),
          h("td.num", null, r.params === null ? "–" : r.params.toLocaleString("en-US")),
          budget);
      }),
    );
  }
}
