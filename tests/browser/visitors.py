"""A fresh visitor for the browser tests that need several: a browser context of its own (its own
cookies, so its own workspace) and a page in it."""


def new_page(browser):
    """``(context, page)``: a new context (close it when done) and its page, 60 s default wait."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(60_000)
    return context, page
