"""The blind arena: pairwise votes between levels (votes), their Bradley–Terry ratings
(ratings), the pairs shown (pairs) and the votes' copy on the Hub (hub_sync). No gradio here:
the lab's tab is ``lab/arena_tab.py``."""
