// Page importance, the rule by which RaaS refreshes a page's timestamp (DESIGN.md section 6,
// docs/raas.md): which held pages of one KV head the current step's queries find important.
// Plain function over fp32 host arrays, the shape of a kernel: a max per page and query head,
// a max per query head, a compare, an "any" over the group.
//
//   token_scores [group, tokens]  q_g . k_t for the query heads g of one KV head's group, over
//                                 the held tokens, page after page
//   page_lengths [pages]          tokens of each page, in the order of token_scores
//   result       [pages]          true for an important page
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace louiskv {

// scores[g, t] = queries[g] . keys[t] for the group's query heads over `tokens` held keys. RaaS
// reads its held keys on the host, so this stays a plain function of kv/.
void query_key_scores(std::span<const float> queries, int64_t group, std::span<const float> keys, int64_t tokens,
                      int64_t dim, std::span<float> scores);

// A page's score for a query head is the largest q.k over its tokens: RaaS keeps a page for the
// "milestone" tokens in it, and one strongly attended token is enough (Quest, whose pages RaaS
// builds on, likewise ranks a page by a bound on its largest q.k). A page is important when,
// for at least one query head of the group, its strongest token draws at least `ratio` times the
// attention probability of that head's most attended held token:
//   exp(scale * (max over the page of q.k - max over all held tokens of q.k)) >= ratio.
// Probabilities share the softmax denominator, so the rule needs no lse. ratio in (0, 1]: 1 keeps
// only the page of the strongest token; smaller ratios admit more pages.
std::vector<bool> important_pages(std::span<const float> token_scores, int64_t group,
                                  std::span<const int64_t> page_lengths, float scale,
                                  double ratio);

}  // namespace louiskv
