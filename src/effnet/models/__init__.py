"""The networks: paper-shaped specs (`specs`), compound scaling (`scaling`), the model (`net`), its feature
extractors (`features`), the named models (`registry`), measured complexity (`complexity`) and the blocks (`layers`)."""
